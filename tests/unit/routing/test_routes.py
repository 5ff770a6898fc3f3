"""Route tensor helpers: compact format size, validation, padded <-> packed conversion."""

from __future__ import annotations

import pytest
import torch

from stable_verl.core.routing import (
    compact_dtype,
    route_bytes_per_token,
    routes_from_padded,
    routes_to_padded,
    validate_routes,
)


def test_route_bytes_per_token():
    assert route_bytes_per_token(48, 8, 128) == 384  # Qwen3-30B-A3B: 48 layers, top-8 of 128 experts
    assert route_bytes_per_token(48, 8, 256) == 384
    assert route_bytes_per_token(48, 8, 257) == 768
    assert route_bytes_per_token(58, 8, 256) == 464  # DeepSeek-V3: 58 MoE layers, top-8 of 256


def test_compact_dtype():
    assert compact_dtype(8) == torch.uint8 and compact_dtype(256) == torch.uint8
    assert compact_dtype(300) == torch.int16
    with pytest.raises(ValueError, match="at most 32768 experts"):
        compact_dtype(40000)


def test_padded_packed_round_trip():
    gen = torch.Generator().manual_seed(0)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])  # right-, left-, un-padded rows
    nnz = int(mask.sum())
    packed = torch.randint(0, 128, (nnz, 4, 2), generator=gen, dtype=torch.uint8)  # (nnz, L, k)
    padded = routes_to_padded(packed, mask)  # (B, S, L, k)
    assert padded.shape == (3, 5, 4, 2) and padded.dtype == torch.uint8
    assert not padded[~mask.bool()].any()
    assert torch.equal(padded[1, 2], packed[3])  # row-major: row 0 holds 3 valid tokens
    assert torch.equal(routes_from_padded(padded, mask), packed)
    assert torch.equal(routes_from_padded(padded.flatten(0, 1), mask), packed)  # (B*S, L, k) as routes() returns


def test_helpers_reject_mismatches():
    mask = torch.ones(2, 3)
    with pytest.raises(ValueError, match="routes have 5 tokens but attention_mask has 6 valid tokens"):
        routes_to_padded(torch.zeros(5, 1, 2, dtype=torch.uint8), mask)
    with pytest.raises(ValueError, match=r"routes have 7 tokens but attention_mask \(2, 3\) has 6"):
        routes_from_padded(torch.zeros(7, 1, 2, dtype=torch.uint8), mask)
    with pytest.raises(ValueError, match="do not match attention_mask"):
        routes_from_padded(torch.zeros(2, 4, 1, 2, dtype=torch.uint8), mask)
    with pytest.raises(ValueError, match="attention_mask must be shaped"):
        routes_from_padded(torch.zeros(6, 1, 2, dtype=torch.uint8), torch.ones(6))


def test_validate_routes():
    ok = torch.randint(0, 8, (2, 3, 4, 2))  # (B, S, L, k)
    assert validate_routes(ok, 4, 2, 8).shape == (6, 4, 2)
    with pytest.raises(ValueError, match=r"shaped \(tokens, layers, k\)"):
        validate_routes(torch.zeros(4, 2, dtype=torch.uint8), 4, 2, 8)
    with pytest.raises(ValueError, match="routes have 4 layers but the model has 3 MoE layers"):
        validate_routes(ok, 3, 2, 8)
    with pytest.raises(ValueError, match="expert id 7 out of range: the model has 7 experts"):
        validate_routes(torch.full((1, 4, 2), 7), 4, 2, 7)
