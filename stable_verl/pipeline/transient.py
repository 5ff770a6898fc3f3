"""Which failures are worth retrying: network and object-store hiccups, never bad input or a verl crash.

A retried stage resumes from its last checkpoint in the store, so a retry costs at most ``save_freq``
steps; retrying a deterministic failure would only repeat it.
"""

from __future__ import annotations

from collections.abc import Iterator

from stable_verl.artifacts import ArtifactIntegrityError
from stable_verl.pipeline.launch.runner import VerlRunError

# S3 error codes that mean "try again" (throttling, server-side trouble, clock/timeouts).
TRANSIENT_S3_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "500",
        "502",
        "503",
        "504",
    }
)
# botocore / aiohttp network errors, matched by class name so neither library is imported here.
NETWORK_ERRORS = frozenset(
    {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ClientConnectionError",
        "ServerDisconnectedError",
        "IncompleteReadError",
        "ResponseStreamingError",
    }
)


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def _is_network(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):  # includes ConnectionRefused/Reset, socket timeouts
        return True
    if NETWORK_ERRORS & {cls.__name__ for cls in type(exc).__mro__}:
        return True
    response = getattr(exc, "response", None)  # botocore ClientError
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in TRANSIENT_S3_CODES


def is_transient(exc: BaseException | None) -> bool:
    """True for network/S3 errors and corrupted downloads; False for verl failures, bad input and the rest."""
    if exc is None:
        return False
    for link in _chain(exc):
        if isinstance(link, VerlRunError | ValueError):
            return False  # verl crashed or timed out, or the input is wrong: a retry repeats it
        if isinstance(link, ArtifactIntegrityError) or _is_network(link):
            return True
    return False
