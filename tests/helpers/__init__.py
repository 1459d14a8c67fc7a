"""What the tests share that is not a fixture: starting the local org and servers, signing in the
way a browser does, reading the org's counters, waiting with a deadline. Fixtures live in the
conftest.py files; test modules import helpers from here and never from each other."""
