"""verl's TransferQueue, one per Ray job: two verl runs on one Ray cluster no longer share (and break) one.

transfer_queue 0.1.11 names its controller ``TransferQueueController`` in the fixed Ray namespace
``transfer_queue`` (``transfer_queue/interface.py``: ``init`` creates it there, ``_init_from_existing`` looks it up
there, and ``init`` attaches to one it finds instead of starting its own). Ray's named actors are cluster-wide, so
the second verl job on a cluster (two Ray Jobs at once) attached to the first job's controller and storage units:
each job's replay buffer listed the other's prompts and trajectories, and when the first job ended (its
``tq.close()`` kills them, and they are its actors) the second one's next ``get`` waited on a dead storage unit
(issue 28, docs/results/2026-12-04-parallel-cells.md).

:func:`install` reads that namespace as the caller's own Ray job's, ``transfer_queue-<job id>``, in the two
transfer_queue modules that name it: every process of a job (its driver's actors share its job id) finds the
job's own controller, and no process of another job does. verl imports this through the stable-verl plugin in
each of its processes (:mod:`stable_verl.verl_ext.verl_plugin`), before any of them reaches TransferQueue.
"""

from __future__ import annotations

import importlib
from typing import Any

TQ_NAMESPACE = "transfer_queue"
"""The fixed namespace transfer_queue names its actors in."""
MODULES = {
    "transfer_queue.interface": "TransferQueueController",  # the controller (SimpleStorage's units are not named)
    "transfer_queue.storage.clients.ray_storage_client": "RayObjectRefStorage",  # the RayStore backend's one actor
}
"""The transfer_queue modules that create or look up an actor in :data:`TQ_NAMESPACE`, with that actor's class."""


def job_namespace() -> str:
    """The namespace of this process's Ray job's TransferQueue actors: ``transfer_queue-<job id>``."""
    import ray

    return f"{TQ_NAMESPACE}-{ray.get_runtime_context().get_job_id()}"


def _scoped(namespace: str | None) -> str | None:
    return job_namespace() if namespace == TQ_NAMESPACE else namespace


class _JobScopedRay:
    """Ray as one transfer_queue module sees it: ``get_actor`` in :data:`TQ_NAMESPACE` looks in the job's own."""

    def __init__(self, ray: Any) -> None:
        self._ray = ray

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ray, name)

    def get_actor(self, name: str, namespace: str | None = None) -> Any:
        return self._ray.get_actor(name, namespace=_scoped(namespace))


class _JobScopedActorClass:
    """A transfer_queue actor class whose ``options(namespace=TQ_NAMESPACE)`` create it in the job's own."""

    def __init__(self, cls: Any) -> None:
        self._cls = cls

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cls, name)

    def options(self, **options: Any) -> Any:
        if "namespace" in options:
            options["namespace"] = _scoped(options["namespace"])
        return self._cls.options(**options)


def install() -> None:
    """Scope TransferQueue's named actors to the calling process's Ray job; idempotent."""
    for name, actor in MODULES.items():
        module = importlib.import_module(name)
        if not isinstance(module.ray, _JobScopedRay):
            module.ray = _JobScopedRay(module.ray)
        cls = getattr(module, actor)
        if not isinstance(cls, _JobScopedActorClass):
            setattr(module, actor, _JobScopedActorClass(cls))


def installed() -> bool:
    """Whether :func:`install` has run in this process (each module's Ray and actor class are scoped)."""
    modules = [importlib.import_module(name) for name in MODULES]
    return all(
        isinstance(m.ray, _JobScopedRay) and isinstance(getattr(m, a), _JobScopedActorClass)
        for m, a in zip(modules, MODULES.values(), strict=True)
    )
