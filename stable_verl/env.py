"""Every environment variable of stable-verl's own (``STABLE_VERL_*``): declared once here, read here, at call time.

Each variable is an :class:`EnvVar` (its name and what it means); the modules that set one for a child process use its
``name``, the modules that read one call its :meth:`EnvVar.get` or a typed reader below. The reference page of the
docs (``docs/gen_reference.py``: *Environment variables*) is generated from this module.

This module imports only the standard library and sits below every layer: verl's, Ray's and vLLM's worker processes
(``stable_verl.verl_ext``, which may import only ``core`` and ``artifacts``; tests/unit/test_layers.py) and the
artifact store read it as well as the flows do. Variables of other tools (``AWS_*``, ``RAY_*``, ``VLLM_*``, ``HF_*``,
``VERL_*``) are theirs: stable-verl sets some of them for its child processes where it builds their environment
(``stable_verl.config.cpu_env``) and reads none of them here, except the AWS endpoint fallbacks of
:func:`s3_endpoint`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class EnvVar:
    """One environment variable: its ``name`` and what it means (``doc``, the reference page's text)."""

    name: str
    doc: str

    def get(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The value in ``environ`` (default: this process's environment, read now); None when unset or empty."""
        value = (os.environ if environ is None else environ).get(self.name)
        return value or None


ARTIFACT_ROOT = EnvVar(
    "STABLE_VERL_ARTIFACT_ROOT",
    "The artifact store's root when no `--store` / `store.root` is given: a folder or `s3://bucket/prefix` "
    "(unset: `./artifacts`).",
)
S3_ENDPOINT = EnvVar(
    "STABLE_VERL_S3_ENDPOINT",
    "The S3-compatible endpoint of `s3://` stores and data files (MinIO, moto); unset: `AWS_ENDPOINT_URL_S3`, then "
    "`AWS_ENDPOINT_URL`, then AWS itself. Also set for verl's processes, next to the sync variables.",
)
SITE_URL = EnvVar(
    "STABLE_VERL_SITE_URL",
    "The base URL at which the store's root is served (a bucket website, MinIO with anonymous read, a web server); "
    "Prefect's links to the store's pages go under it. Unset: `file://` links for local stores, `s3://` otherwise.",
)
NATIVE_BF16 = EnvVar(
    "STABLE_VERL_NATIVE_BF16",
    "`1` / `0`: this CPU computes bf16 natively or not (unset: detected from the CPU flags); without it, bf16 "
    "compute is emulated in fp32 on CPU.",
)
NODE_DIR = EnvVar(
    "STABLE_VERL_NODE_DIR",
    "A Ray node's own scratch folder (set on `ray start`): a cluster job's checkpoints, inputs and logs live in a "
    "folder named by the run id under it, on the node that writes them. Required on the nodes of Ray Jobs with inputs "
    "or SFT.",
)
SYNC_ROOT = EnvVar(
    "STABLE_VERL_SYNC_ROOT",
    "Set by stable-verl for verl's processes: the store's root to which they upload checkpoints and metrics.",
)
SYNC_RUN = EnvVar(
    "STABLE_VERL_SYNC_RUN",
    "Set by stable-verl for verl's processes: the run id whose checkpoints and metrics they upload.",
)
INPUTS = EnvVar(
    "STABLE_VERL_INPUTS",
    "Set by stable-verl for a Ray Job: the stage's inputs (store prefixes, JSON) each node materialises into its "
    "`STABLE_VERL_NODE_DIR` before verl reads them.",
)
ATTEMPT = EnvVar(
    "STABLE_VERL_ATTEMPT",
    "Set by stable-verl for an SFT Ray Job: the stage's attempt, which names the node's log in the store "
    "(`logs/attempt-N.log`; unset: 0).",
)
ROLLOUT_PRECISION = EnvVar(
    "STABLE_VERL_ROLLOUT_PRECISION",
    "Set by stable-verl for vLLM: `native` (unset), `bf16`, `fp8` or `int4`: the rollout engine's weights are "
    "rounded to it at every load, so mu_old moves away from pi_old by exactly that precision.",
)
EXPERT_AUDIT = EnvVar(
    "STABLE_VERL_EXPERT_AUDIT",
    "A folder: the routing engine records, per forward, the experts each MoE layer received (R3's audit). Unset: off.",
)
CHAT_TEMPLATE = EnvVar(
    "STABLE_VERL_CHAT_TEMPLATE",
    "Set by stable-verl for verl: a user model's chat template (Jinja text), read by verl's config as "
    "`custom_chat_template=${oc.env:STABLE_VERL_CHAT_TEMPLATE}`.",
)
CPU_VISIBLE_DEVICES = EnvVar(
    "STABLE_VERL_CPU_VISIBLE_DEVICES",
    "The CPU platform's visible-devices variable, which Ray sets per worker as it sets `CUDA_VISIBLE_DEVICES` on "
    "GPUs (read by Ray, not by stable-verl).",
)

VARIABLES: tuple[EnvVar, ...] = (
    ARTIFACT_ROOT,
    S3_ENDPOINT,
    SITE_URL,
    NATIVE_BF16,
    NODE_DIR,
    SYNC_ROOT,
    SYNC_RUN,
    INPUTS,
    ATTEMPT,
    ROLLOUT_PRECISION,
    EXPERT_AUDIT,
    CHAT_TEMPLATE,
    CPU_VISIBLE_DEVICES,
)
"""Every variable of this module, in the reference page's order."""

ENDPOINT_ENV_VARS = (S3_ENDPOINT.name, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")  # AWS's own fallbacks
"""Where an ``s3://`` endpoint comes from, first set wins (the last two are AWS's own)."""


def s3_endpoint(environ: Mapping[str, str] | None = None) -> str | None:
    """The S3 endpoint of :data:`ENDPOINT_ENV_VARS` (None: AWS's default)."""
    env = os.environ if environ is None else environ
    return next((env[v] for v in ENDPOINT_ENV_VARS if env.get(v)), None)


def native_bf16(environ: Mapping[str, str] | None = None) -> bool | None:
    """``$STABLE_VERL_NATIVE_BF16`` as a bool (``0/false/no``, ``1/true/yes``); None when unset (detect it).
    Any other value is a ``ValueError`` naming the variable."""
    forced = (NATIVE_BF16.get(environ) or "").strip().lower()
    if forced in ("0", "false", "no"):
        return False
    if forced in ("1", "true", "yes"):
        return True
    if forced:
        raise ValueError(f"{NATIVE_BF16.name} must be 0 or 1 (unset: detected from the CPU flags), got {forced!r}")
    return None


def rollout_precision(environ: Mapping[str, str] | None = None) -> str:
    """``$STABLE_VERL_ROLLOUT_PRECISION`` lower-cased, ``native`` when unset (the caller checks the value)."""
    return (ROLLOUT_PRECISION.get(environ) or "native").strip().lower()


def site_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``$STABLE_VERL_SITE_URL`` without surrounding blanks; None when unset or blank."""
    return (SITE_URL.get(environ) or "").strip() or None
