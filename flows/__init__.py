"""Prefect flows: thin declarations over stable_verl's stages (parameters -> stage calls -> artifacts).

Importing the package sets Prefect's defaults for flows started outside ``make`` (which exports the same), before
Prefect itself is imported (it reads its settings once, at import); a user's own values win.
"""

import os

PREFECT_DEFAULTS = {
    # The temporary (ephemeral) Prefect server's start-up limit: Prefect's 20 s fail a flow on a busy machine.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    # The temporary server would send telemetry, and log an ERROR where only registries are reachable.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
}
for _key, _value in PREFECT_DEFAULTS.items():
    os.environ.setdefault(_key, _value)
