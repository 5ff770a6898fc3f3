"""Route tensors: the compact ``(tokens, layers, k)`` format, its size, validation and padding/packing helpers.

A route tensor lists, for every token the routers saw (flattened in order, i.e. ``B * S`` row-major for a padded
batch, ``nnz`` for a packed/unpadded one), for every MoE layer (in decoder-layer order), the ``k`` expert ids the
token was routed to. Expert ids are stored in 1 byte when the model has at most 256 experts, else 2 bytes.

``routes_from_padded`` / ``routes_to_padded`` convert between the padded ``(B, S, L, k)`` layout and the packed
``(nnz, L, k)`` layout with the same row-major token order as ``attention_mask.bool()`` indexing (and flash-attn's
``unpad_input``), so routes recorded in one layout can be replayed in the other.
"""

from __future__ import annotations

import torch


def compact_dtype(num_experts: int) -> torch.dtype:
    """``uint8`` when every expert id fits in a byte (``num_experts <= 256``), else ``int16``."""
    if num_experts <= 256:
        return torch.uint8
    if num_experts <= 32768:
        return torch.int16
    raise ValueError(f"num_experts={num_experts} does not fit the compact route format (at most 32768 experts)")


def route_bytes_per_token(num_layers: int, top_k: int, num_experts: int) -> int:
    """Bytes one token's routes take in the compact format: ``layers * k * (1 if experts <= 256 else 2)``."""
    return num_layers * top_k * compact_dtype(num_experts).itemsize


def validate_routes(routes: torch.Tensor, num_layers: int, top_k: int, num_experts: int) -> torch.Tensor:
    """Check a ``(tokens, layers, k)`` (or ``(B, S, layers, k)``) route tensor; return it as ``(tokens, layers, k)``.

    Raises ``ValueError`` naming expected vs got for a wrong rank, dtype, layer count, k or expert id.
    """
    if not isinstance(routes, torch.Tensor):
        raise ValueError(f"routes must be a torch.Tensor, got {type(routes).__name__}")
    if routes.dim() == 4:
        routes = routes.flatten(0, 1)  # (B, S, L, k) -> (B*S, L, k)
    if routes.dim() != 3:
        raise ValueError(f"routes must be shaped (tokens, layers, k) or (B, S, layers, k), got {tuple(routes.shape)}")
    if routes.dtype.is_floating_point or routes.dtype.is_complex or routes.dtype == torch.bool:
        raise ValueError(f"routes must hold integer expert ids, got dtype {routes.dtype}")
    if routes.shape[1] != num_layers:
        raise ValueError(f"routes have {routes.shape[1]} layers but the model has {num_layers} MoE layers")
    if routes.shape[2] != top_k:
        raise ValueError(f"routes have k={routes.shape[2]} experts per token but the model routes top_k={top_k}")
    if routes.numel():
        lo, hi = torch.stack(torch.aminmax(routes)).tolist()  # one device-to-host copy for both
        if lo < 0 or hi >= num_experts:
            bad = hi if hi >= num_experts else lo
            raise ValueError(
                f"routes hold expert id {bad} out of range: "
                f"the model has {num_experts} experts (ids 0..{num_experts - 1})"
            )
    return routes


def _mask_and_check(attention_mask: torch.Tensor) -> torch.Tensor:
    if attention_mask.dim() != 2:
        raise ValueError(f"attention_mask must be shaped (B, S), got {tuple(attention_mask.shape)}")
    return attention_mask.bool()


def routes_from_padded(routes_bslk: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Drop padding: ``(B, S, L, k)`` (or ``(B*S, L, k)``) routes + ``(B, S)`` mask -> ``(nnz, L, k)``."""
    mask = _mask_and_check(attention_mask)  # (B, S)
    if routes_bslk.dim() == 3:
        if routes_bslk.shape[0] != mask.numel():
            raise ValueError(
                f"routes have {routes_bslk.shape[0]} tokens but attention_mask {tuple(mask.shape)} has {mask.numel()}"
            )
        routes_bslk = routes_bslk.view(*mask.shape, *routes_bslk.shape[1:])  # (B, S, L, k)
    if routes_bslk.dim() != 4 or routes_bslk.shape[:2] != mask.shape:
        raise ValueError(
            f"routes {tuple(routes_bslk.shape)} do not match attention_mask {tuple(mask.shape)}: expected (B, S, L, k)"
        )
    return routes_bslk[mask.to(routes_bslk.device)]  # (nnz, L, k)


def routes_to_padded(routes_nnz: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Re-pad: ``(nnz, L, k)`` routes + ``(B, S)`` mask -> ``(B, S, L, k)``, padding positions filled with 0."""
    mask = _mask_and_check(attention_mask).to(routes_nnz.device)  # (B, S)
    if routes_nnz.dim() != 3:
        raise ValueError(f"routes must be shaped (nnz, layers, k), got {tuple(routes_nnz.shape)}")
    nnz = int(mask.sum())
    if routes_nnz.shape[0] != nnz:
        raise ValueError(f"routes have {routes_nnz.shape[0]} tokens but attention_mask has {nnz} valid tokens")
    out = routes_nnz.new_zeros(*mask.shape, *routes_nnz.shape[1:])  # (B, S, L, k)
    out[mask] = routes_nnz
    return out


def valid_route_rows(routes: torch.Tensor) -> torch.Tensor:
    """``(tokens,)`` True where a ``(tokens, L, k)`` row is a real top-k in every layer (no repeated expert id).

    Rows the inference engine never routed (the last sampled token, padding) are all zeros, i.e. invalid for
    ``k >= 2``; with ``k == 1`` every row counts as valid.
    """
    if routes.dim() != 3:
        raise ValueError(f"routes must be shaped (tokens, layers, k), got {tuple(routes.shape)}")
    if routes.shape[-1] < 2:
        return torch.ones(routes.shape[0], dtype=torch.bool, device=routes.device)
    ordered = routes.sort(dim=-1).values  # (tokens, L, k)
    return ~(ordered[..., 1:] == ordered[..., :-1]).any(dim=-1).any(dim=-1)


def route_set_mismatch(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(tokens, L)`` True where two ``(tokens, L, k)`` route tensors pick a different *set* of experts.

    The order inside a top-k does not matter (engines sort differently); the dtypes may differ.
    """
    if a.shape != b.shape:
        raise ValueError(f"route tensors differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a_sorted = a.to(torch.int64).sort(dim=-1).values
    b_sorted = b.to(torch.int64).sort(dim=-1).values
    return (a_sorted != b_sorted).any(dim=-1)
