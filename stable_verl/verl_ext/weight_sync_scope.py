"""verl's weight-sync socket, one per local Ray cluster: two local verl runs on one machine no longer share one.

verl 0.9.1 hands the trainer's weights to vLLM through a ZMQ socket named by the Ray job id,
``ipc:///tmp/rl-colocate-zmq-<job id>-replica-<r>-rank-<k>.sock`` (the sender's path in
``vllm_rollout/vllm_rollout.py``, the receiver's in ``vllm_rollout/utils.py``). A job id is unique within one Ray
cluster only, and every fresh local cluster's first job is ``01000000``: two local runs on one machine (two flows, a
flow beside a test) used one path. The sender deletes and rebinds it at every sync, so when two syncs overlapped one
run's vLLM waited for ever on the other's socket (2026-12-04: a phase-1 cell hung after step 131 beside a soak run).

:func:`install` makes verl's ``BucketedWeightSender`` and ``BucketedWeightReceiver``, the two ends of that socket,
insert the node's raylet, ``raylet<pid>-``, after ``rl-colocate-zmq-``. Both ends run on one node: the sender in a
trainer worker (a Ray worker), the receiver in vLLM's engine process, which its server actor (a Ray worker) starts and
which inherits that actor's environment, where Ray sets ``RAY_RAYLET_PID``. Two Ray clusters alive on one machine have
two raylets, so their paths differ; outside Ray (no ``RAY_RAYLET_PID``) a path is left as verl names it. The classes are
patched when verl's module is first imported (its package imports vLLM, so not before), from the stable-verl plugin
that ``import verl`` loads in every verl process (:mod:`stable_verl.verl_ext.verl_plugin`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import wrapt

MODULE = "verl.workers.rollout.vllm_rollout.bucketed_weight_transfer"
"""verl's module that holds both ends of the weight-sync socket."""
ENDS = ("BucketedWeightSender", "BucketedWeightReceiver")
"""The classes in :data:`MODULE` that take the socket's path, ``zmq_handle``, as their first argument."""
PREFIX = "ipc:///tmp/rl-colocate-zmq-"
"""How verl begins the path of that socket."""
RAYLET_PID = "RAY_RAYLET_PID"
"""The environment variable in which Ray gives each of its workers its node's raylet process id."""


def scoped(handle: str, env: Mapping[str, str] = os.environ) -> str:
    """``handle`` with this node's raylet after verl's prefix; unchanged outside Ray, for another path, or if done."""
    raylet = env.get(RAYLET_PID)
    if not raylet or not handle.startswith(PREFIX):
        return handle
    tag = f"raylet{raylet}-"
    rest = handle[len(PREFIX) :]
    return handle if rest.startswith(tag) else f"{PREFIX}{tag}{rest}"


def _scope_first_argument(wrapped: Callable[..., Any], instance: Any, args: tuple, kwargs: dict) -> Any:
    if "zmq_handle" in kwargs:
        kwargs = {**kwargs, "zmq_handle": scoped(kwargs["zmq_handle"])}
    elif args:
        args = (scoped(args[0]), *args[1:])
    return wrapped(*args, **kwargs)


def patch(module: Any) -> None:
    """Make both ends in verl's ``module`` scope the path they are given; idempotent."""
    for name in ENDS:
        if not _is_scoped(getattr(module, name)):
            wrapt.wrap_function_wrapper(module, f"{name}.__init__", _scope_first_argument)


def install() -> None:
    """Patch :data:`MODULE` when it is imported (now, if it has been); :func:`patch` makes a second call harmless."""
    wrapt.register_post_import_hook(patch, MODULE)


def installed(module: Any) -> bool:
    """Whether both ends in verl's imported ``module`` scope their path."""
    return all(_is_scoped(getattr(module, name)) for name in ENDS)


def _is_scoped(cls: type) -> bool:
    return isinstance(vars(cls).get("__init__"), wrapt.FunctionWrapper)
