"""Defaults shared by every environment. Names are the environment variables they stand for."""

SF_LOGIN_URL = "https://login.salesforce.com"
# Extra login hosts offered on the Connect button, "Label=https://host" separated by commas.
# Empty: Production and Sandbox are offered when SF_LOGIN_URL is login.salesforce.com.
SF_LOGIN_HOSTS = ""
SF_REDIRECT_URI = "http://localhost:5000/oauth/callback"
SF_SCOPES = "api refresh_token"
# Empty: the version of the partner WSDL in use.
SF_API_VERSION = ""
# Empty: the project's own partner WSDL (sfconnect/wsdl/partner.wsdl).
SF_PARTNER_WSDL = ""
SF_TRUSTED_HOSTS = ""
# Empty: a Fernet key derived from SECRET_KEY.
SF_TOKEN_KEY = ""
SESSION_TYPE = "filesystem"
SESSION_FILE_DIR = "instance/sessions"
REDIS_URL = ""
# Seconds a signed-in browser session lives without use.
SESSION_LIFETIME = "28800"
# Seconds to wait for Salesforce's answer to any one call (token, identity, SOAP).
SF_HTTP_TIMEOUT = "30"
