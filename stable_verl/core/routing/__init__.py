"""Routing Replay (R2/R3, arXiv 2512.01374 §5) for Hugging Face MoE models: pure torch + transformers.

Routing Replay fixes which experts a MoE uses during policy optimisation: R2 records the training engine's routes
in the old-log-prob pass and replays them in the updates; R3 replays the inference engine's routes. Under replay
the top-k *indices* come from the recorded tensor while the gate *weights* are the live router scores gathered at
those indices and renormalised exactly as the router would, so the router still receives gradient.

Public API:

* ``RoutingReplay.attach(model) -> RoutingReplay``: patch every router instance; modes "off" / "record" / "replay";
  ``record()`` context + ``routes()`` -> ``(tokens, layers, k)`` uint8/int16; ``set_replay(routes)`` /
  ``replay(routes)`` context; ``detach()``.
* ``native_routes()`` / ``used_routes()`` after any forward; ``route_set_mismatch`` / ``valid_route_rows`` for
  the mismatch (inference vs training) and drift (old vs current policy) metrics.
* ``routes_from_padded`` / ``routes_to_padded``: ``(B, S, L, k)`` <-> ``(nnz, L, k)`` given an attention mask.
* ``route_bytes_per_token``, ``compact_dtype``, ``validate_routes``.
* ``SUPPORTED_MODEL_TYPES``: the ``config.model_type`` values with a known router.
"""

from stable_verl.core.routing.controller import MODES, RoutingReplay
from stable_verl.core.routing.families import FAMILIES, SUPPORTED_MODEL_TYPES, RouterFamily
from stable_verl.core.routing.routes import (
    compact_dtype,
    route_bytes_per_token,
    route_set_mismatch,
    routes_from_padded,
    routes_to_padded,
    valid_route_rows,
    validate_routes,
)

__all__ = [
    "FAMILIES",
    "MODES",
    "SUPPORTED_MODEL_TYPES",
    "RouterFamily",
    "RoutingReplay",
    "compact_dtype",
    "route_bytes_per_token",
    "route_set_mismatch",
    "routes_from_padded",
    "routes_to_padded",
    "valid_route_rows",
    "validate_routes",
]
