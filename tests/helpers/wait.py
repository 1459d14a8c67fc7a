"""The one way a test waits for something another thread or process does: poll with a deadline.

A test never sleeps for a fixed time to let something happen; it names what it waits for, and
fails with a message saying what did not happen when the deadline passes.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


def until(predicate: Callable[[], T], timeout: float = 30, *,
          message: str | Callable[[], str] = "the condition did not become true",
          interval: float = 0.02) -> T:
    """Call `predicate` until it returns something true and return that, or fail the test with
    `message` (a string, or a function that writes it then) once `timeout` seconds have passed.
    `predicate` may itself fail the test (e.g. when the process it waits for has died)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            pytest.fail(f"{text} (waited {timeout:g} s)", pytrace=False)
        time.sleep(interval)
