"""Leases: one writer at a time per run and purpose, held through the store (works the same on S3 and locally).

A lease is one small object, ``leases/<purpose>/<run_id>.json``::

    {"owner": "host/pid 123/1a2b3c4d", "purpose": "eval", "run_id": ..., "acquired_at": ..., "heartbeat": ...,
     "expires": <epoch seconds>, "ttl_s": 300}

* **Acquire**: if the object is absent, or stale (its ``expires`` is past, or it names a process of this machine that
  no longer exists: a killed flow rerun on the same machine need not wait for the expiry), write ours,
  wait ``settle_s`` and read it back; the lease is ours only if the object still names us. A contender that read
  the object before our write and writes its own within ``settle_s`` makes the later writer win and the earlier
  one read someone else's name back, so two owners never both hold it (S3 and local renames are last-writer-wins
  with read-after-write consistency; the store has no compare-and-swap).
* **Heartbeat**: while held, a daemon thread rewrites ``heartbeat`` and ``expires`` every ``ttl_s / 3``; if the
  object names another owner (ours expired and was taken over), the lease is marked lost and not rewritten.
* **Release**: the object is deleted if it still names us.

Expiry is in wall-clock seconds, so holders' clocks must agree to within a small part of ``ttl_s``.
"""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass

from stable_verl.artifacts.manifest import utc_now
from stable_verl.artifacts.store import ArtifactStore

DEFAULT_TTL_S = 60.0
"""A lease whose holder stopped heart-beating is stale after this long (heartbeats come every ttl/3)."""


def default_owner() -> str:
    """This process, unique across machines and restarts: ``host/pid N/<random>``."""
    return f"{socket.gethostname()}/pid {os.getpid()}/{uuid.uuid4().hex[:8]}"


class LeaseHeld(RuntimeError):
    """Another owner holds the lease (and did not release it within the wait)."""

    def __init__(self, state: LeaseState) -> None:
        super().__init__(f"{state.purpose} lease on {state.run_id} is held by {state.owner} {state.describe()}")
        self.state = state


@dataclass(frozen=True)
class LeaseState:
    """The lease object's contents."""

    owner: str
    purpose: str
    run_id: str
    acquired_at: str
    heartbeat: str
    expires: float
    """Epoch seconds after which the lease is stale and may be taken over."""
    ttl_s: float

    def expired(self, now: float | None = None) -> bool:
        """Past its expiry, or its owner was a process of this machine that is gone (a killed flow, rerun here)."""
        return (time.time() if now is None else now) >= self.expires or self._owner_died_here()

    def _owner_died_here(self) -> bool:
        host, _, rest = self.owner.partition("/pid ")
        pid = rest.split("/", 1)[0]
        if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, another user's
            return False
        return False

    def describe(self) -> str:
        left = self.expires - time.time()
        when = f"expires in {left:.0f} s" if left > 0 else f"expired {-left:.0f} s ago"
        if left > 0 and self._owner_died_here():
            when += ", its process is gone"
        return f"(since {self.acquired_at}, last heartbeat {self.heartbeat}, {when})"


def lease_path(purpose: str, run_id: str) -> str:
    """Store path of the ``purpose`` lease (``train``, ``eval``) on ``run_id``."""
    return f"leases/{purpose}/{run_id}.json"


class Lease:
    """The ``purpose`` lease on one run; ``with lease.hold(): ...`` acquires, heart-beats and releases it."""

    def __init__(
        self,
        store: ArtifactStore,
        purpose: str,
        run_id: str,
        owner: str | None = None,
        ttl_s: float = DEFAULT_TTL_S,
        settle_s: float = 1.0,
    ) -> None:
        self.store, self.purpose, self.run_id = store, purpose, run_id
        self.owner = owner or default_owner()
        self.ttl_s, self.settle_s = ttl_s, settle_s
        self.path = lease_path(purpose, run_id)
        self.lost = False
        """Set when a heartbeat found another owner's name: our lease expired and was taken over."""
        self._acquired_at = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------- state
    def read(self) -> LeaseState | None:
        """The lease object now (None: nobody holds it)."""
        try:
            raw = self.store.read_json(self.path)
        except FileNotFoundError:
            return None
        try:
            return LeaseState(**raw)
        except TypeError:  # a foreign or damaged object: treat it as stale
            return LeaseState("?", self.purpose, self.run_id, "?", "?", 0.0, 0.0)

    def _write(self) -> None:
        now = utc_now()
        self._acquired_at = self._acquired_at or now
        state = LeaseState(
            self.owner, self.purpose, self.run_id, self._acquired_at, now, time.time() + self.ttl_s, self.ttl_s
        )
        self.store.write_json(self.path, asdict(state), redact_keys=False)

    # ----------------------------------------------------------------------------------------- acquire
    def try_acquire(self, echo: Callable[[str], None] = print) -> LeaseState | None:
        """Take the lease if free or stale; returns None when taken, else the other owner's live lease."""
        current = self.read()
        if current is not None and current.owner != self.owner and not current.expired():
            return current
        if current is not None and current.owner != self.owner:
            echo(
                f"[lease] taking over the stale {self.purpose} lease on {self.run_id} of {current.owner} "
                f"{current.describe()}"
            )
        self._write()
        time.sleep(self.settle_s)
        after = self.read()
        if after is None or after.owner != self.owner:
            return after or current  # a contender wrote after us: it holds the lease
        self.lost = False
        return None

    def acquire(self, wait_s: float = 0.0, poll_s: float = 5.0, echo: Callable[[str], None] = print) -> None:
        """Take the lease, waiting up to ``wait_s`` for its holder to release it (or go stale); else :class:`LeaseHeld`.

        Starts the heartbeat thread.
        """
        deadline = time.monotonic() + wait_s
        said = False
        while (other := self.try_acquire(echo)) is not None:
            if time.monotonic() >= deadline:
                raise LeaseHeld(other)
            if not said:
                echo(f"[lease] waiting{'' if math.isinf(wait_s) else f' up to {wait_s:.0f} s'}: {LeaseHeld(other)}")
                said = True
            time.sleep(min(poll_s, max(0.0, deadline - time.monotonic())))
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{self.purpose}-{self.run_id}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            self.heartbeat()

    def heartbeat(self) -> bool:
        """Renew the expiry if the lease is still ours; returns whether it is (False: lost to a takeover)."""
        try:
            current = self.read()
            if current is not None and current.owner != self.owner:
                self.lost = True
                return False
            self._write()
        except Exception:  # a store hiccup: the next beat retries, well before expiry
            return not self.lost
        return True

    def release(self) -> None:
        """Stop heart-beating and delete the lease object if it still names us."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        current = self.read()
        if current is not None and current.owner == self.owner:
            self.store.delete(self.path)
        self._acquired_at = ""

    def clear_stale(self, echo: Callable[[str], None] = print) -> bool:
        """Delete the lease object if its holder is gone (expired, or a dead process of this machine).

        A holder killed between finishing its work and releasing (kill -9) leaves its lease behind; a later run
        that finds the work done calls this so that no stale lease stays in the store for ever.
        """
        current = self.read()
        if current is None or current.owner == self.owner or not current.expired():
            return False
        echo(
            f"[lease] removing the stale {self.purpose} lease on {self.run_id} of {current.owner} {current.describe()}"
        )
        self.store.delete(self.path)
        return True

    def hold(self, wait_s: float = 0.0, echo: Callable[[str], None] = print) -> _Held:
        """Context manager: :meth:`acquire` on entry (``LeaseHeld`` if still busy after ``wait_s``), then release."""
        return _Held(self, wait_s, echo)


class _Held:
    def __init__(self, lease: Lease, wait_s: float, echo: Callable[[str], None]) -> None:
        self.lease, self.wait_s, self.echo = lease, wait_s, echo

    def __enter__(self) -> Lease:
        self.lease.acquire(self.wait_s, echo=self.echo)
        return self.lease

    def __exit__(self, *exc: object) -> None:
        self.lease.release()
