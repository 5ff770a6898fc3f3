"""``RoutingReplay``: record a MoE model's expert routes and replay them in later forwards.

Usage (R2: the training engine's own routes; R3 would pass the inference engine's routes instead)::

    rr = RoutingReplay.attach(model)          # patches every router instance's forward
    with torch.no_grad(), rr.record():        # old-log-prob pass: native routing, routes stored per layer
        old_logits = model(input_ids).logits
    routes = rr.routes()                      # (tokens, layers, k) uint8 / int16
    with rr.replay(routes):                   # policy update: experts fixed to the recorded ones
        loss = loss_fn(model(input_ids).logits)
        loss.backward()                       # router still gets gradient via the live gate weights
    rr.detach()                               # original forwards restored

Tokens are the flattened token dimension the routers see, in order: ``B * S`` (row-major) for a padded batch,
``nnz`` for a packed one; see ``routes_from_padded`` / ``routes_to_padded`` to convert.

Diagnostics: after any forward, ``native_routes()`` gives the experts each router would have picked by itself
(in replay mode computed alongside, without gradient, when ``track_native`` is set) and ``used_routes()`` the
experts it actually used. A replayed row holding a repeated expert id (an all-zero row: a token the inference
engine never routed, such as the last sampled token, or padding) is not a valid top-k; that token keeps its native
routing, as verl's VeOmni replay does.

Activation checkpointing: a recompute (a router forward run inside ``backward()``) serves exactly the indices the
original forward of that layer used, whatever the mode is by then, and never records. So replay survives recompute,
even if ``backward()`` runs after leaving ``replay()``, and record mode never double-records. With several
forwards before their backwards (e.g. pipelined micro-batches) under checkpointing, run each backward before the
next forward of the same layers: state is kept per layer, for the latest forward.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from stable_verl.core.routing.families import RouterFamily, RouterOutput, find_routers, resolve_family
from stable_verl.core.routing.routes import compact_dtype, route_bytes_per_token, validate_routes

MODES = ("off", "record", "replay")
LAYER_ATTR = "routing_replay_layer"  # set on each patched router: its absolute decoder-layer index

_graph_task_id = getattr(torch._C, "_current_graph_task_id", None)


def _in_backward() -> bool:
    """True while the autograd engine runs a backward, i.e. this forward is an activation-checkpoint recompute."""
    return _graph_task_id is not None and _graph_task_id() != -1


def _invalid_rows(indices: torch.Tensor) -> torch.Tensor:
    """``(tokens,)`` True where a ``(tokens, k)`` row repeats an expert id (no valid top-k; k == 1 is always valid)."""
    if indices.shape[-1] < 2:
        return indices.new_zeros(indices.shape[0], dtype=torch.bool)
    ordered = indices.sort(dim=-1).values
    return (ordered[:, 1:] == ordered[:, :-1]).any(dim=-1)


class RoutingReplay:
    """Controller over every router of one MoE model (or bare MoE block). Build it with ``RoutingReplay.attach``."""

    def __init__(self, model: nn.Module, family: RouterFamily, routers: list[tuple[int, str, nn.Module]]) -> None:
        self.model = model
        self.family = family
        self.layer_indices: list[int] = [layer for layer, _, _ in routers]  # absolute decoder-layer index per slot
        self.router_names: list[str] = [name for _, name, _ in routers]
        self._routers: list[nn.Module] = [router for _, _, router in routers]
        top_ks = {int(r.top_k) for r in self._routers}
        n_experts = {int(r.num_experts) for r in self._routers}
        if len(top_ks) != 1 or len(n_experts) != 1:
            raise ValueError(
                f"routing replay needs one top_k and expert count, got top_k={top_ks}, experts={n_experts}"
            )
        self.top_k: int = top_ks.pop()
        self.num_experts: int = n_experts.pop()
        self._hidden_dims: list[int] = [int(r.weight.shape[1]) for r in self._routers]
        self._mode = "off"
        n = len(self._routers)
        self._recorded: list[torch.Tensor | None] = [None] * n  # (tokens, k) int64 per layer
        self._replay: list[torch.Tensor] | None = None  # (tokens, k) int64 contiguous per layer
        self._replay_invalid: list[torch.Tensor | None] = [None] * n  # (tokens,) unrouted rows, None if there are none
        self._fwd_indices: list[torch.Tensor | None] = [None] * n  # what each layer's last forward replayed
        self._native: list[torch.Tensor | None] = [None] * n  # native top-k of each layer's last forward
        self._used: list[torch.Tensor | None] = [None] * n  # indices each layer's last forward routed by
        self.track_native = False  # in replay mode, also compute the native top-k (for mismatch / drift metrics)
        self._saved_forwards: list[object | None] = []
        self._attached = False

    # -- attach / detach -------------------------------------------------------------------------------------

    @classmethod
    def attach(cls, model: nn.Module) -> RoutingReplay:
        """Find every router of ``model`` and patch each router *instance*'s forward (the class is untouched).

        ``model`` is a transformers MoE model (family from ``config.model_type``) or a bare sparse-MoE block
        (family from its router class; its single router gets layer index 0). Raises ``ValueError`` for a dense
        model or an unsupported MoE family.
        """
        family = resolve_family(model)
        routers = find_routers(model, family)
        for _, name, router in routers:
            if hasattr(router, LAYER_ATTR):
                raise ValueError(f"routing replay is already attached to {name}; detach() it first")
        rr = cls(model, family, routers)
        for slot, router in enumerate(rr._routers):
            rr._saved_forwards.append(router.__dict__.get("forward"))
            native = router.forward  # bound method (or a pre-existing instance override)
            router.forward = rr._make_forward(slot, router, native)
            setattr(router, LAYER_ATTR, rr.layer_indices[slot])
        rr._attached = True
        return rr

    def detach(self) -> None:
        """Restore every router's original forward and drop all stored routes."""
        if not self._attached:
            return
        for router, saved in zip(self._routers, self._saved_forwards, strict=True):
            if saved is None:
                del router.forward
            else:
                router.forward = saved
            delattr(router, LAYER_ATTR)
        self._saved_forwards = []
        self._attached = False
        self._mode = "off"
        self.clear()

    def _make_forward(
        self, slot: int, router: nn.Module, native: Callable[[torch.Tensor], RouterOutput]
    ) -> Callable[[torch.Tensor], RouterOutput]:
        replay_gate = self.family.replay_gate
        recorded, fwd_indices = self._recorded, self._fwd_indices

        def forward(hidden_states: torch.Tensor) -> RouterOutput:
            if _in_backward():  # checkpoint recompute: serve what the original forward used, record nothing
                indices = fwd_indices[slot]
                return native(hidden_states) if indices is None else replay_gate(router, hidden_states, indices)
            mode = self._mode
            if mode == "off":
                fwd_indices[slot] = None
                return native(hidden_states)
            if mode == "record":
                out = native(hidden_states)  # (logits, weights, indices (tokens, k))
                recorded[slot] = self._native[slot] = self._used[slot] = out[2]
                fwd_indices[slot] = None
                return out
            indices, invalid = self._replay_indices(slot, hidden_states)  # (tokens, k), (tokens,) or None
            native_ids = None
            if self.track_native or invalid is not None:
                with torch.no_grad():
                    native_ids = native(hidden_states)[2]  # (tokens, k)
                if invalid is not None:  # unrouted rows (a repeated expert id) take the router's own choice
                    indices = torch.where(invalid.unsqueeze(-1), native_ids, indices)
            self._native[slot] = native_ids
            self._used[slot] = fwd_indices[slot] = indices
            return replay_gate(router, hidden_states, indices)

        return forward

    # -- modes ---------------------------------------------------------------------------------------------------

    @property
    def num_layers(self) -> int:
        """Number of MoE layers (routers), i.e. the ``layers`` dimension of a route tensor."""
        return len(self._routers)

    @property
    def route_dtype(self) -> torch.dtype:
        """Compact dtype of ``routes()``: uint8 for <= 256 experts, else int16."""
        return compact_dtype(self.num_experts)

    @property
    def bytes_per_token(self) -> int:
        return route_bytes_per_token(self.num_layers, self.top_k, self.num_experts)

    @property
    def mode(self) -> str:
        return self._mode

    @mode.setter
    def mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"routing replay mode must be one of {MODES}, got {mode!r}")
        if mode == "replay" and self._replay is None:
            raise ValueError("routing replay mode 'replay' needs routes: call set_replay(routes) or use replay(routes)")
        self._mode = mode

    def clear(self) -> None:
        """Forget recorded and replay routes (the mode is kept, except replay falls back to off)."""
        n = self.num_layers
        self._recorded[:] = [None] * n
        self._fwd_indices[:] = [None] * n
        self._native[:] = [None] * n
        self._used[:] = [None] * n
        self._replay = None
        self._replay_invalid[:] = [None] * n
        if self._mode == "replay":
            self._mode = "off"

    @contextmanager
    def record(self) -> Iterator[RoutingReplay]:
        """Native routing; every router stores its top-k indices. Read them with ``routes()`` (also after exit)."""
        previous = self._mode
        self._recorded[:] = [None] * self.num_layers
        self.mode = "record"
        try:
            yield self
        finally:
            self._mode = previous

    @contextmanager
    def replay(self, routes: torch.Tensor) -> Iterator[RoutingReplay]:
        """Route by ``routes`` inside the block; the previous mode is restored and the routes dropped on exit."""
        previous = self._mode
        self.set_replay(routes)
        try:
            yield self
        finally:
            self._replay = None
            self._replay_invalid[:] = [None] * self.num_layers
            self._mode = previous if previous != "replay" else "off"

    # -- routes --------------------------------------------------------------------------------------------------

    def routes(self) -> torch.Tensor:
        """The routes of the last forward in record mode: ``(tokens, layers, k)`` in ``route_dtype``."""
        return self._stack(self._recorded, "recorded", "run a forward inside record() first")

    def native_routes(self) -> torch.Tensor:
        """What every router picked by itself in the last forward (record mode, or replay with ``track_native``)."""
        return self._stack(self._native, "native", "record, or replay with track_native=True")

    def used_routes(self) -> torch.Tensor:
        """The experts every router actually routed by in the last forward (recorded or replayed)."""
        return self._stack(self._used, "used", "run a forward in record or replay mode first")

    def _stack(self, per_layer: list[torch.Tensor | None], what: str, hint: str) -> torch.Tensor:
        missing = [self.layer_indices[i] for i, r in enumerate(per_layer) if r is None]
        if missing:
            raise RuntimeError(f"no {what} routes for decoder layers {missing}: {hint}")
        layers: list[torch.Tensor] = per_layer  # type: ignore[assignment]
        tokens = {r.shape[0] for r in layers}
        if len(tokens) != 1:
            raise RuntimeError(f"{what} routes of different layers saw different token counts {sorted(tokens)}")
        out = torch.empty(  # (tokens, L, k)
            (layers[0].shape[0], self.num_layers, self.top_k), dtype=self.route_dtype, device=layers[0].device
        )
        for slot, indices in enumerate(layers):
            out[:, slot].copy_(indices)  # (tokens, k) int64 -> compact
        return out

    def set_replay(self, routes: torch.Tensor) -> None:
        """Validate ``routes`` ``(tokens, layers, k)`` (or ``(B, S, layers, k)``) and switch to replay mode.

        Raises ``ValueError`` naming expected vs got for a wrong layer count, k or expert id; a token count that
        does not match what a router sees is reported at forward time.

        The rows the inference engine never routed (a repeated expert id) are found here, once for every layer
        with one host sync, so a router forward in replay mode never waits on the device.
        """
        routes = validate_routes(routes, self.num_layers, self.top_k, self.num_experts)  # (tokens, L, k)
        per_layer = routes.to(torch.long).permute(1, 0, 2).contiguous()  # (L, tokens, k)
        self._replay = list(per_layer.unbind(0))  # L x (tokens, k), each contiguous
        invalid = _invalid_rows(per_layer.flatten(0, 1)).view(per_layer.shape[:2])  # (L, tokens)
        any_invalid = invalid.any(dim=1).tolist()  # (L,) the one sync
        self._replay_invalid = [rows if found else None for rows, found in zip(invalid, any_invalid, strict=True)]
        self._mode = "replay"

    def _replay_indices(self, slot: int, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Layer ``slot``'s replay routes ``(tokens, k)`` on the hidden states' device, and its unrouted rows."""
        replay = self._replay
        if replay is None:
            raise RuntimeError("routing replay is in replay mode without routes: call set_replay(routes)")
        indices = replay[slot]  # (tokens, k)
        tokens = hidden_states.numel() // self._hidden_dims[slot]
        if tokens != indices.shape[0]:
            raise ValueError(
                f"routing replay: decoder layer {self.layer_indices[slot]} router saw {tokens} tokens "
                f"but the replay routes have {indices.shape[0]} tokens"
            )
        invalid = self._replay_invalid[slot]
        if indices.device != hidden_states.device:
            indices = replay[slot] = indices.to(hidden_states.device)
            if invalid is not None:
                invalid = self._replay_invalid[slot] = invalid.to(hidden_states.device)
        return indices, invalid

    def __repr__(self) -> str:
        return (
            f"RoutingReplay(family={self.family.name}, layers={self.layer_indices}, top_k={self.top_k}, "
            f"num_experts={self.num_experts}, mode={self._mode!r})"
        )
