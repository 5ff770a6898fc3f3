"""Experiment trackers beside verl's console and file loggers: the ``trainer.logger`` list and their environment.

The pipeline reads two of verl's loggers itself: ``console`` (the progress of a stage is parsed from its step
lines) and ``file`` (the metrics the store keeps). Those two always stay; W&B, MLflow, TensorBoard, ... are added
by name (``logging.backends``) and are never part of a run's identity.

Credentials (``WANDB_API_KEY``, ``MLFLOW_TRACKING_TOKEN``, ``MLFLOW_TRACKING_PASSWORD``, ...) are never parameters:
they come from the environment of the process that runs verl. A local run inherits this machine's environment; a
Ray Job gets only the non-secret settings below (:func:`forwarded`), so its nodes must hold the secrets themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from stable_verl.artifacts.redact import redact_url

ALWAYS = ("console", "file")
"""verl loggers every stage keeps: progress parses the console's step lines, the store's metrics come from file."""

BACKENDS = ("wandb", "mlflow", "tensorboard", "swanlab", "clearml", "trackio")
"""Trackers of verl's ``Tracking`` (verl/utils/tracking.py) a user may add."""

SETTINGS: dict[str, tuple[str, ...]] = {
    "wandb": ("WANDB_MODE", "WANDB_ENTITY", "WANDB_BASE_URL", "WANDB_DIR"),
    "mlflow": ("MLFLOW_TRACKING_URI",),
    "tensorboard": ("TENSORBOARD_DIR",),
    "swanlab": ("SWANLAB_MODE", "SWANLAB_LOG_DIR"),
}
"""Each backend's non-secret variables, forwarded into a Ray Job's environment when set on the flow's machine.
(W&B's project is ``logging.project``: verl passes ``trainer.project_name`` to ``wandb.init``.)"""


def logger_override(backends: Sequence[str]) -> str:
    """verl's ``trainer.logger`` list: console and file, then ``backends``."""
    return f"trainer.logger=[{','.join([*ALWAYS, *backends])}]"


def forwarded(backends: Sequence[str], environ: Mapping[str, str]) -> dict[str, str]:
    """The settings of ``backends`` that ``environ`` holds, for a Ray Job's ``runtime_env`` (no secrets: a job's
    environment is visible on the cluster). ValueError if a tracking URI embeds a password."""
    out = {}
    for backend in backends:
        for name in SETTINGS.get(backend, ()):
            if environ.get(name):
                if redact_url(environ[name]) != environ[name]:
                    raise ValueError(
                        f"{name} holds a password, which a Ray Job's environment would show on the cluster: "
                        f"drop it from the URL and set MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or a token) "
                        f"in the environment of the cluster's nodes"
                    )
                out[name] = environ[name]
    return out


def run_env(backends: Sequence[str], project: str, run_id: str, env: Mapping[str, str]) -> dict[str, str]:
    """Per-run variables of ``backends`` (``env``: the stage's environment so far).

    W&B: every attempt of a run logs into one W&B run, ``<run id>`` (``WANDB_RUN_ID``, ``WANDB_RESUME=allow``).
    TensorBoard: a ``TENSORBOARD_DIR`` given by the user is a root, each run writes ``<root>/<project>/<run id>``
    (verl's own default, ``tensorboard_log/<project>/<run id>`` under the run's working folder, otherwise)."""
    out = {}
    if "wandb" in backends:
        out.update(WANDB_RUN_ID=run_id, WANDB_RESUME="allow")
    if "tensorboard" in backends and env.get("TENSORBOARD_DIR"):
        out["TENSORBOARD_DIR"] = f"{env['TENSORBOARD_DIR'].rstrip('/')}/{project}/{run_id}"
    return out
