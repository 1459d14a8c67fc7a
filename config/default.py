"""Every setting's default, written once. Names are the environment variables they stand for;
config/<ENV>.py overrides a few per environment (development and testing use these unchanged)."""

# Empty: a random key per process in development and testing (sessions end when it stops);
# config/production.py makes it mandatory.
SECRET_KEY = ""
REQUIRE_SECRET_KEY = False
SF_LOGIN_URL = "https://login.salesforce.com"
# Extra login hosts offered on the Connect button, "Label=https://host" separated by commas.
# Empty: Production and Sandbox are offered when SF_LOGIN_URL is login.salesforce.com.
SF_LOGIN_HOSTS = ""
# Empty: python app.py starts the local org and registers the app with it.
SF_CLIENT_ID = ""
SF_CLIENT_SECRET = ""
SF_REDIRECT_URI = "http://localhost:5000/oauth/callback"
SF_SCOPES = "api refresh_token"
# Empty: the version of the partner WSDL in use.
SF_API_VERSION = ""
# Empty: the project's own partner WSDL (sfconnect/salesforce/wsdl/partner.wsdl).
SF_PARTNER_WSDL = ""
# Hosts beyond Salesforce's own that may receive the token: host, .domain, either with :port.
SF_TRUSTED_HOSTS = ""
# Empty: a Fernet key derived from SECRET_KEY.
SF_TOKEN_KEY = ""
SESSION_TYPE = "filesystem"
# Empty: the app's instance folder (instance/ next to the package).
SESSION_FILE_DIR = ""
REDIS_URL = ""
# Seconds a signed-in browser session lives without use.
SESSION_LIFETIME = "28800"
# Seconds to wait for Salesforce's answer to any one call (token, identity, SOAP).
SF_HTTP_TIMEOUT = "30"
# "off" runs the core alone: no trace, no step-by-step mode, no /flow /flows /compare /setup.
SF_LEARNING = "on"
# KB of the session store one browser session's flow trace may take: its entries are compressed,
# then past this the bodies of the oldest are shortened to 2 KB, then the oldest dropped. 0: no
# budget (each entry keeps up to 64 KB of a body, the last 100 entries are kept).
TRACE_BUDGET_KB = "384"
# `flask sf token --flow jwt`: the private key (PEM) that signs the assertion, and its user.
SF_JWT_KEY_FILE = ""
SF_USERNAME = ""
