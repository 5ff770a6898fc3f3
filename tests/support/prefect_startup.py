"""Prefect's temporary-server start-up limit, raised for test processes (no Prefect import here).

That wait is a fixed limit of Prefect's own that cannot see progress (20 s by default, 120 s in flows/__init__.py
and the Makefile): a busy machine fails a flow before it starts. Test sessions and campaigns call
:func:`raise_startup_limit` before Prefect is imported (it reads its settings once), so they and every flow process
they start (each starts a server of its own) get :data:`PREFECT_STARTUP_S`, a higher value kept; they pass
``prefect_test_harness(server_startup_timeout=None)`` so the harness reads it too.
"""

from __future__ import annotations

import os

STARTUP_KEY = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
PREFECT_STARTUP_S = 600


def raise_startup_limit() -> None:
    """Set :data:`STARTUP_KEY` to at least :data:`PREFECT_STARTUP_S` in this process's environment."""
    os.environ[STARTUP_KEY] = str(max(PREFECT_STARTUP_S, int(os.environ.get(STARTUP_KEY) or 0)))
