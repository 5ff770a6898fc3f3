"""Retrying the store's operations on transient object-store errors, and counting the retries.

Three layers retry an S3 request: botocore (each HTTP attempt: 5xx, throttling, dropped connections; 5 attempts),
s3fs (a few error patterns, and a ``GetObject`` body cut mid-way), and, once both gave up, the store itself: each
:class:`~stable_verl.artifacts.store.ArtifactStore` operation (a read, a write, a listing, a whole directory
upload or verified download) is retried with exponential backoff while the error is transient
(:func:`is_transient_store_error`). Bad input, missing objects and denied access are never retried.

:func:`retry_counts` gives the store-level retries of this process, by operation (``make soak`` reports them).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from stable_verl.artifacts.errors import ArtifactIntegrityError

log = logging.getLogger(__name__)
T = TypeVar("T")

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
        "ConnectionClosedError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ClientConnectionError",
        "ClientPayloadError",
        "ServerDisconnectedError",
        "IncompleteReadError",
        "ResponseStreamingError",
    }
)


def exception_chain(exc: BaseException | None) -> Iterator[BaseException]:
    """``exc``, then its causes / contexts (each once)."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def is_network_error(exc: BaseException) -> bool:
    """A connection or timeout error, or an S3 error response whose code means "try again"."""
    if isinstance(exc, ConnectionError | TimeoutError):  # includes ConnectionRefused/Reset, socket timeouts
        return True
    if NETWORK_ERRORS & {cls.__name__ for cls in type(exc).__mro__}:
        return True
    response = getattr(exc, "response", None)  # botocore ClientError
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code in TRANSIENT_S3_CODES


def is_transient_store_error(exc: BaseException) -> bool:
    """Whether retrying the store operation that raised ``exc`` may succeed (network, 5xx, a corrupted download)."""
    chain = list(exception_chain(exc))
    if any(isinstance(link, FileNotFoundError | PermissionError | ValueError) for link in chain):
        return False
    return any(isinstance(link, ArtifactIntegrityError) or is_network_error(link) for link in chain)


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` tries; before try n+1 wait ``min(max_s, base_s * 2**(n-1))``, jittered by 50-100%."""

    attempts: int = 5
    base_s: float = 0.5
    max_s: float = 8.0

    def delay(self, attempt: int) -> float:
        return min(self.max_s, self.base_s * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)


NO_RETRY = RetryPolicy(attempts=1)

_lock = threading.Lock()
_counts: Counter[str] = Counter()


def retry_counts() -> dict[str, int]:
    """Store-level retries in this process so far, by operation (``read``, ``write``, ``upload``...)."""
    with _lock:
        return dict(_counts)


def reset_retry_counts() -> None:
    with _lock:
        _counts.clear()


def call_with_retries(policy: RetryPolicy, op: str, where: Callable[[], str], fn: Callable[[], T]) -> T:
    """``fn()``, retried under ``policy`` while it raises a transient error; each retry is counted and logged."""
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == policy.attempts or not is_transient_store_error(exc):
                raise
            delay = policy.delay(attempt)
            with _lock:
                _counts[op] += 1
            log.warning(
                "artifact store %s of %s failed (%s), retry %d/%d in %.1f s",
                op,
                where(),
                type(exc).__name__,
                attempt,
                policy.attempts - 1,
                delay,
            )
            time.sleep(delay)
    raise AssertionError("unreachable")
