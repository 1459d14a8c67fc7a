"""Local development: a throwaway SECRET_KEY is generated when none is given."""

REQUIRE_SECRET_KEY = False
