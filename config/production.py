"""Production: refuses to start without a SECRET_KEY; everything else comes from the environment."""

REQUIRE_SECRET_KEY = True
