"""The tests. A package so that `tests.helpers` is found here first, whatever else is installed;
the test modules themselves are collected by pytest, never imported."""
