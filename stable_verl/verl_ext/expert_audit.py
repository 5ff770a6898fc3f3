"""Expert audit: which experts each MoE layer's experts module actually received, per token, inside verl's workers.

Routing replay reports its own bookkeeping (``RoutingReplay.used_routes``: the indices its patched routers
returned). The audit looks one step later, at the inputs of every MoE block's ``experts`` module (forward pre-hooks
on ``mlp.experts``, the ``top_k_index`` argument), so a replay whose routes never reach the experts is caught even if
the bookkeeping says it held.

Off unless ``STABLE_VERL_EXPERT_AUDIT`` names a folder (Ray workers inherit it from the driver). The routing engine
then saves one file per replay-enabled micro-batch forward: ``{pass, input_ids, offsets, experts, <route fields>}``
with ``experts`` ``(nnz, L, k)`` uint8 in nested-token order. tests/integration/test_routing_replay_run.py reads
them.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from torch import nn

from stable_verl.env import EXPERT_AUDIT

ENV = EXPERT_AUDIT.name


class ExpertAudit:
    """Forward pre-hooks on the experts module beside each router; ``received()`` stacks the last forward's ids."""

    def __init__(self, model: nn.Module, router_names: list[str], folder: Path) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._seen: list[torch.Tensor | None] = [None] * len(router_names)
        self._count = itertools.count()
        for slot, name in enumerate(router_names):
            block = model.get_submodule(name.rsplit(".", 1)[0])  # the sparse-MoE block holding the router
            experts = getattr(block, "experts", None)
            if not isinstance(experts, nn.Module):
                raise ValueError(f"expert audit: {type(block).__name__} at {name} has no experts module")
            experts.register_forward_pre_hook(self._hook(slot))

    @classmethod
    def from_env(cls, model: nn.Module, router_names: list[str]) -> ExpertAudit | None:
        folder = EXPERT_AUDIT.get()
        return cls(model, router_names, Path(folder)) if folder else None

    def _hook(self, slot: int):
        def hook(_module: nn.Module, args: tuple) -> None:
            self._seen[slot] = args[1].detach().reshape(-1, args[1].shape[-1]).to("cpu", torch.uint8)  # (tokens, k)

        return hook

    def received(self) -> torch.Tensor:
        """``(tokens, L, k)`` uint8: the expert ids each layer's experts module got in the last forward."""
        if any(s is None for s in self._seen):
            raise RuntimeError("expert audit: a MoE layer's experts module did not run in this forward")
        out = torch.stack(self._seen, dim=1)  # type: ignore[arg-type]
        self._seen = [None] * len(self._seen)
        return out

    def save(self, record: dict) -> None:
        torch.save(record, self.folder / f"{os.getpid()}-{next(self._count):05d}.pt")
