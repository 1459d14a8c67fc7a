"""The test suite: like development; tests pass their own settings to create_app."""

REQUIRE_SECRET_KEY = False
