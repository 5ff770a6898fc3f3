"""Routing Replay (R2 / R3) in verl's FSDP engine for Hugging Face MoE models.

verl 0.9.1 replays routes only in its Megatron and VeOmni engines. This module adds it to the FSDP engine the same
way verl's VeOmni engine does, through verl's own seams:

* ``RoutingReplayFSDPEngine`` subclasses ``FSDPEngineWithLMHead`` and takes its place in verl's
  ``EngineRegistry`` (``language_model`` / ``fsdp``, ``fsdp2``). With replay off and no routes in the batch it is
  the parent class, call for call.
* stable-verl's actor worker (:mod:`stable_verl.verl_ext.actor_worker`) turns verl's ``enable_routing_replay``
  flag on for ``strategy=fsdp*`` (verl hard-codes it to Megatron / VeOmni), so that this engine sees it.

Selected by verl's own config key ``actor_rollout_ref.actor.fsdp_config.router_replay.mode``:

* ``R2``: the old-log-prob pass (``compute_log_prob``) runs natively and records every router's top-k; the
  routes go back into the batch as ``train_routed_experts`` and every mini-batch update of the step replays them.
* ``R3``: both the old-log-prob pass and the updates replay ``routed_experts``, the routes vLLM sampled with
  (``rollout.enable_rollout_routing_replay=True``; on CPU see :mod:`stable_verl.verl_ext.cpu.vllm_routes`).
* ``disabled`` with vLLM routes in the batch: no replay, diagnostics only.

Diagnostics (per token, aggregated into ``metrics.jsonl`` by the trainer): ``routing_mismatch`` is the fraction of
MoE layers whose top-k *set* differs between vLLM and the training engine's own router (old policy);
``routing_mismatch_replayed`` the same for the experts the training forward actually used (0 under R3);
``actor/routing/drift`` the fraction of (token, layer) pairs where the policy being updated would pick another set
than the old policy's routes; ``actor/routing/replay_miss_rate`` the fraction of replayed (token, layer) pairs
whose experts were not the replayed ones (0: replay held). Gate weights always come from the live router
(``stable_verl.core.routing``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from tensordict import TensorDict
from verl.utils import tensordict_utils as tu
from verl.workers.engine import EngineRegistry
from verl.workers.engine.fsdp.transformer_impl import FSDPEngineWithLMHead

from stable_verl.core.routing import RoutingReplay, route_set_mismatch, valid_route_rows
from stable_verl.verl_ext.expert_audit import ExpertAudit

logger = logging.getLogger(__name__)

MODES = ("disabled", "R2", "R3")
VLLM_ROUTES = "routed_experts"  # verl's field: vLLM's routes, int16 (B, S, L, k) -> nested per sequence
TRAIN_ROUTES = "train_routed_experts"  # ours: the training engine's old-policy routes, compact, nested
MISMATCH = "routing_mismatch"  # per token: fraction of layers where vLLM and the training router disagree
MISMATCH_REPLAYED = "routing_mismatch_replayed"  # the same for the experts the training forward used
DRIFT_METRIC = "routing/drift"
REPLAY_MISS_METRIC = "routing/replay_miss_rate"  # routed tokens whose experts differ from the replayed ones


def replay_mode(config) -> str:
    """verl's ``actor.fsdp_config.router_replay.mode`` ('disabled' when absent); a dataclass or a mapping."""
    if isinstance(config, Mapping):
        router_replay = config.get("router_replay")
    else:
        router_replay = getattr(config, "router_replay", None)
    if isinstance(router_replay, Mapping):
        mode = router_replay.get("mode", "disabled")
    else:
        mode = getattr(router_replay, "mode", "disabled")
    mode = mode or "disabled"
    if mode not in MODES:
        raise ValueError(f"router_replay.mode must be one of {MODES}, got {mode!r}")
    return mode


def check_replay_config(mode: str, rollout_routes: bool, strategy: str, ulysses_sp: int = 1) -> None:
    """Refuse, before training starts, a replay setup that cannot work."""
    if mode == "disabled":
        return
    if strategy not in ("fsdp", "fsdp2"):
        raise ValueError(f"stable-verl routing replay runs in the FSDP engine; actor.strategy is {strategy!r}")
    if mode == "R3" and not rollout_routes:
        raise ValueError(
            "router_replay.mode=R3 replays vLLM's routes, but rollout.enable_rollout_routing_replay is false: "
            "vLLM would return no routed_experts"
        )
    if ulysses_sp > 1:
        raise ValueError(f"routing replay supports ulysses_sequence_parallel_size=1, got {ulysses_sp}")


def _mask_from_offsets(offsets: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B, max_len)`` bool: the valid (left-aligned) positions of a nested batch, as verl pads it."""
    lengths = offsets.diff()
    return torch.arange(max_len, device=offsets.device).unsqueeze(0) < lengths.unsqueeze(1)


class RoutingReplayFSDPEngine(FSDPEngineWithLMHead):
    """verl's FSDP engine plus routing replay (see the module docstring)."""

    _rr: RoutingReplay | None = None
    _rr_action: str | None = None  # this call: "record" | "replay" | "observe" | None
    _rr_layout: dict | None = None  # this micro-batch: how router tokens map to nested tokens
    _audit: ExpertAudit | None | bool = False  # False: not looked up yet (expert_audit, off unless its env is set)

    # -- setup -------------------------------------------------------------------------------------------------

    def initialize(self):
        super().initialize()
        self._rr_mode = replay_mode(self.engine_config)
        if self._rr_mode != "disabled":
            check_replay_config(self._rr_mode, True, self.engine_config.strategy, self.ulysses_sequence_parallel_size)
            self._routing()  # a dense or unsupported model fails here, before the first step
            logger.info("routing replay %s on %r", self._rr_mode, self._rr)

    def _routing(self) -> RoutingReplay:
        if self._rr is None:
            self._rr = RoutingReplay.attach(self.module)  # ValueError for a dense or unsupported model
        return self._rr

    # -- per call ------------------------------------------------------------------------------------------------

    def forward_backward_batch(self, data: TensorDict, loss_function, forward_only=False):
        if not tu.get_non_tensor_data(data, "enable_routing_replay", default=False):
            return super().forward_backward_batch(data, loss_function, forward_only)
        mode = self._rr_mode
        if forward_only:  # compute_log_prob: pi_old
            self._rr_action = "replay" if mode == "R3" else "record"
        else:  # update_actor
            self._rr_action = "replay" if mode in ("R2", "R3") else "observe"
        rr = self._routing()
        try:
            return super().forward_backward_batch(data, loss_function, forward_only)
        finally:
            self._rr_action = self._rr_layout = None
            rr.track_native = False
            rr.mode = "off"
            rr.clear()

    def prepare_model_inputs(self, micro_batch: TensorDict):
        model_inputs, output_args = super().prepare_model_inputs(micro_batch)
        if self._rr_action is not None:
            self._arm(micro_batch, model_inputs, output_args)
        return model_inputs, output_args

    def _arm(self, micro_batch: TensorDict, model_inputs: dict, output_args: dict) -> None:
        rr = self._routing()
        if self._audit is False:
            self._audit = ExpertAudit.from_env(self.module, rr.router_names)
        offsets = micro_batch["input_ids"].offsets()
        packed = tu.get_non_tensor_data(micro_batch, "use_remove_padding", default=True)
        if packed:
            layout = {"packed": True, "pad": int(output_args.get("pad_size", 0) or 0), "offsets": offsets}
        else:
            max_len = model_inputs["input_ids"].shape[1]
            layout = {"packed": False, "mask": _mask_from_offsets(offsets, max_len), "offsets": offsets}
        self._rr_layout = layout
        if self._rr_action in ("record", "observe"):
            rr.mode = "record"
            return
        source = VLLM_ROUTES if self._rr_mode == "R3" else TRAIN_ROUTES
        routes = self._nested_routes(micro_batch, source)
        if routes is None:
            raise RuntimeError(
                f"routing replay {self._rr_mode}: the batch has no {source!r}"
                + (" (did vLLM return routed experts?)" if source == VLLM_ROUTES else " (old-log-prob pass missing)")
            )
        rr.set_replay(self._to_router_order(routes))
        rr.track_native = True

    def _nested_routes(self, micro_batch: TensorDict, key: str) -> torch.Tensor | None:
        """``(nnz, L_moe, k)`` int64 routes of ``key`` in nested-token order, or None if absent."""
        if key not in micro_batch.keys():
            return None
        routes = micro_batch[key]
        routes = routes.values() if routes.is_nested else routes
        rr = self._routing()
        if routes.dim() != 3:
            raise ValueError(f"{key} must be (tokens, layers, k) per sequence, got {tuple(routes.shape)}")
        if routes.shape[1] != rr.num_layers:  # vLLM indexes every decoder layer; keep the MoE ones
            if routes.shape[1] <= max(rr.layer_indices):
                raise ValueError(
                    f"{key} has {routes.shape[1]} layers but the model routes in decoder layers {rr.layer_indices}"
                )
            routes = routes[:, rr.layer_indices]
        if routes.shape[2] != rr.top_k:
            raise ValueError(f"{key} has k={routes.shape[2]} but the model routes top_k={rr.top_k}")
        return routes.to(torch.int64)

    def _to_router_order(self, routes: torch.Tensor) -> torch.Tensor:
        """Nested-token order ``(nnz, L, k)`` -> the token order the routers see (padded rows are zero)."""
        layout = self._rr_layout
        if layout["packed"]:
            pad = layout["pad"]
            return torch.cat([routes, routes.new_zeros(pad, *routes.shape[1:])]) if pad else routes
        mask = layout["mask"]
        out = routes.new_zeros(*mask.shape, *routes.shape[1:])  # (B, S, L, k)
        out[mask] = routes
        return out.flatten(0, 1)

    def _to_nested_order(self, routes: torch.Tensor) -> torch.Tensor:
        """Router token order -> nested-token order ``(nnz, L, k)``."""
        layout = self._rr_layout
        if layout["packed"]:
            return routes[: int(layout["offsets"][-1])]
        mask = layout["mask"]
        return routes.view(*mask.shape, *routes.shape[1:])[mask]

    def _jagged(self, values: torch.Tensor) -> torch.Tensor:
        return torch.nested.nested_tensor_from_jagged(values.contiguous(), offsets=self._rr_layout["offsets"])

    # -- outputs ---------------------------------------------------------------------------------------------

    def prepare_model_outputs(self, output, output_args, micro_batch: TensorDict, logits_processor_func):
        model_output = super().prepare_model_outputs(output, output_args, micro_batch, logits_processor_func)
        if self._rr_action is None:
            return model_output
        rr = self._routing()
        native = self._to_nested_order(rr.native_routes())  # (nnz, L, k) compact
        if self._audit:
            self._save_audit(micro_batch)
        if self._rr_action in ("record", "replay") and not torch.is_grad_enabled():  # the old-log-prob pass
            model_output[TRAIN_ROUTES] = self._jagged(native)
            vllm = self._nested_routes(micro_batch, VLLM_ROUTES)
            if vllm is not None:
                used = self._to_nested_order(rr.used_routes())
                valid = valid_route_rows(vllm)  # (nnz,) tokens vLLM routed (not the last sampled token)
                missing = torch.full_like(valid, -1.0, dtype=torch.float32)
                per_token = route_set_mismatch(native, vllm).float().mean(-1)  # (nnz,)
                model_output[MISMATCH] = self._jagged(torch.where(valid, per_token, missing))
                per_token = route_set_mismatch(used, vllm).float().mean(-1)
                model_output[MISMATCH_REPLAYED] = self._jagged(torch.where(valid, per_token, missing))
        else:  # an update: how far pi_theta's own routing has drifted from pi_old's routes
            old = self._nested_routes(micro_batch, TRAIN_ROUTES)
            if old is not None:
                self._metrics[DRIFT_METRIC] = route_set_mismatch(native, old).float().mean().item()
            if self._rr_action == "replay":  # did every router route by the replayed experts?
                target = self._nested_routes(micro_batch, VLLM_ROUTES if self._rr_mode == "R3" else TRAIN_ROUTES)
                used = self._to_nested_order(rr.used_routes())
                valid = valid_route_rows(target)
                miss = route_set_mismatch(used, target)[valid]
                self._metrics[REPLAY_MISS_METRIC] = miss.float().mean().item() if miss.numel() else 0.0
        return model_output

    def _save_audit(self, micro_batch: TensorDict) -> None:
        """What the experts modules received (nested order) beside the batch's sequences and route fields."""
        ids = micro_batch["input_ids"]
        record = {
            "pass": "update" if torch.is_grad_enabled() else "old_log_prob",
            "input_ids": ids.values().cpu(),
            "offsets": ids.offsets().cpu(),
            "experts": self._to_nested_order(self._audit.received()),  # (nnz, L, k)
        }
        for key in (VLLM_ROUTES, TRAIN_ROUTES):
            routes = self._nested_routes(micro_batch, key)
            if routes is not None:
                record[key] = routes.cpu()
        self._audit.save(record)

    def forward_step(self, micro_batch: TensorDict, loss_function, forward_only):
        self._metrics: dict[str, float] = {}
        loss, output = super().forward_step(micro_batch, loss_function, forward_only)
        output["metrics"].update(self._metrics)
        return loss, output


def register() -> None:
    """Put ``RoutingReplayFSDPEngine`` where verl's registry has ``FSDPEngineWithLMHead`` (idempotent)."""
    engines = EngineRegistry._engines.get("language_model", {})
    for backend in ("fsdp", "fsdp2"):
        for device, cls in list(engines.get(backend, {}).items()):
            if cls is FSDPEngineWithLMHead:
                engines[backend][device] = RoutingReplayFSDPEngine
