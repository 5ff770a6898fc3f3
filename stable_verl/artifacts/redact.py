"""Credential redaction for everything the store writes or logs.

Two complementary mechanisms:

* :func:`redact` walks dicts/lists and replaces the *values* of credential-like keys (``key``, ``secret``,
  ``token``, ``password``, ``aws_secret_access_key``, ``AccessKeyId``, ``session_token``, ...) with ``"***"``.
  Key matching is case-insensitive and understands ``snake_case``, ``kebab-case``, ``UPPER_CASE`` and
  ``CamelCase``. It is deliberately narrow about ``token`` so that ML config such as ``max_tokens``,
  ``pad_token`` or ``tokenizer`` survives untouched.
* :func:`scrub` replaces known secret *values* (and the password part of ``scheme://user:pass@host`` URLs)
  anywhere inside free text, e.g. a command line that embedded a key by accident.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "***"

#: Secret values shorter than this are not scrubbed from free text (they would mangle ordinary words).
MIN_SECRET_LEN = 8

_EXACT = frozenset(
    {
        "key",
        "secret",
        "token",
        "password",
        "passwd",
        "authorization",
        "credential",
        "credentials",
        "apikey",
        "hf_token",
        "gh_token",
        "github_token",
        "wandb_key",
        "sas_token",
        "connection_string",
    }
)
_PARTS = frozenset({"secret", "secrets", "password", "passwd", "passphrase", "credential", "credentials"})
_SUFFIXES = (
    "access_key",
    "access_key_id",
    "secret_key",
    "api_key",
    "private_key",
    "account_key",
    "session_token",
    "access_token",
    "auth_token",
    "refresh_token",
    "bearer_token",
    "api_token",
    "security_token",
    "id_token",
    "tracking_token",  # MLFLOW_TRACKING_TOKEN
    "databricks_token",  # DATABRICKS_TOKEN (MLflow on Databricks)
)
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_URL_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@\s]+):(?P<pw>[^@/\s]+)@")


def normalize_key(name: object) -> str:
    """``AWS-Secret.AccessKey`` -> ``aws_secret_access_key``."""
    text = _CAMEL.sub(r"\1_\2", str(name))
    return _NON_ALNUM.sub("_", text.lower()).strip("_")


def is_sensitive_key(name: object, extra_keys: Iterable[str] = ()) -> bool:
    """Whether a mapping key (or environment variable name) names a credential."""
    norm = normalize_key(name)
    if norm in _EXACT or norm in {normalize_key(k) for k in extra_keys}:
        return True
    if any(part in _PARTS for part in norm.split("_")):
        return True
    return any(norm == s or norm.endswith("_" + s) for s in _SUFFIXES)


def redact_url(text: str) -> str:
    """Hide the password of ``scheme://user:password@host`` URLs inside ``text``."""
    return _URL_USERINFO.sub(lambda m: f"{m['scheme']}{m['user']}:{REDACTED}@", text)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Replace every occurrence of the given secret values (>= ``MIN_SECRET_LEN`` chars) and URL passwords."""
    for secret in sorted({s for s in secrets if isinstance(s, str) and len(s) >= MIN_SECRET_LEN}, key=len)[::-1]:
        text = text.replace(secret, REDACTED)
    return redact_url(text)


def redact(obj: Any, *, extra_keys: Iterable[str] = (), secrets: Iterable[str] = ()) -> Any:
    """Return a copy of ``obj`` with credential values replaced by ``"***"``.

    Mappings and lists/tuples are walked recursively (mappings become dicts, sequences lists); strings are
    passed through :func:`scrub` with ``secrets``; ``None``/empty values of sensitive keys are kept so that
    "not configured" stays visible. Other objects are returned unchanged.
    """
    extra = tuple(extra_keys)
    secret_values = tuple(secrets)

    def walk(value: Any) -> Any:
        if isinstance(value, Mapping):
            out = {}
            for k, v in value.items():
                unset = v is None or (isinstance(v, str) and not v)
                out[k] = REDACTED if is_sensitive_key(k, extra) and not unset else walk(v)
            return out
        if isinstance(value, list | tuple):
            return [walk(v) for v in value]
        if isinstance(value, str):
            return scrub(value, secret_values)
        return value

    return walk(obj)


def secret_values(obj: Any, extra_keys: Iterable[str] = ()) -> set[str]:
    """Collect the string values stored under credential-like keys anywhere in ``obj``."""
    found: set[str] = set()
    extra = tuple(extra_keys)

    def walk(value: Any, sensitive: bool = False) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, sensitive or is_sensitive_key(k, extra))
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, sensitive)
        elif sensitive and isinstance(value, str) and value:
            found.add(value)

    walk(obj)
    return found


def env_secrets(environ: Mapping[str, str] | None = None) -> set[str]:
    """Values of credential-like environment variables (``AWS_SECRET_ACCESS_KEY``, ``HF_TOKEN``, ...)."""
    env = os.environ if environ is None else environ
    return {v for k, v in env.items() if v and is_sensitive_key(k)}
