"""Run a flow while a watcher thread kills one of its verl stages: the first attempt of the resume tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


def run_while_killing(flow: Callable[[Any], dict], params: Any, killer: Callable[..., None], *args: Any):
    """``flow(params)`` with ``killer(*args, stop)`` polling in a thread until it kills or the flow ends.

    Returns the flow's exception (expected: the killed stage's) or None, and the attempt's wall time in seconds.
    """
    stop = threading.Event()
    watcher = threading.Thread(target=killer, args=(*args, stop), daemon=True)
    watcher.start()
    t0 = time.monotonic()
    error = None
    try:
        flow(params)
    except Exception as exc:  # expected: the stage whose verl was killed fails the flow
        error = exc
    finally:
        stop.set()
        watcher.join()
    return error, time.monotonic() - t0
