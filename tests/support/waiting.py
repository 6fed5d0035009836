"""Waiting for a condition with a deadline, instead of a fixed sleep."""

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout: float = 30, interval: float = 0.1) -> bool:
    """Poll ``condition`` until it is true or ``timeout`` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return bool(condition())
