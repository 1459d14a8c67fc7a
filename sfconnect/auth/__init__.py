"""Signing in and staying signed in: the OAuth client and its routes, the tokens (records,
refresh, revocation), where a token may go (trust), and who the user is (identity)."""
