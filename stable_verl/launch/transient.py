"""Which failures are worth retrying: network and object-store hiccups, never bad input or a verl crash.

A retried stage resumes from its last checkpoint in the store, so a retry costs at most ``save_freq``
steps; retrying a deterministic failure would only repeat it. The store retries its own operations first
(:mod:`stable_verl.artifacts.retry`); a stage is retried only when those retries ran out.
"""

from __future__ import annotations

from stable_verl.artifacts import ArtifactIntegrityError
from stable_verl.artifacts.retry import NETWORK_ERRORS, TRANSIENT_S3_CODES, exception_chain, is_network_error
from stable_verl.launch.runner import VerlRunError

__all__ = ["NETWORK_ERRORS", "TRANSIENT_S3_CODES", "is_transient"]


def is_transient(exc: BaseException | None) -> bool:
    """True for network/S3 errors and corrupted downloads; False for verl failures, bad input and the rest."""
    if exc is None:
        return False
    for link in exception_chain(exc):
        if isinstance(link, VerlRunError | ValueError):
            return False  # verl crashed or timed out, or the input is wrong: a retry repeats it
        if isinstance(link, ArtifactIntegrityError) or is_network_error(link):
            return True
    return False
