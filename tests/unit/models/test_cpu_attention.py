"""verl's remove-padding call is exact on CPU with sdpa: packed sequences stay apart.

verl packs a micro batch into one row (``use_remove_padding=True``) and calls the model the way
``FSDPEngineWithLMHead.prepare_model_inputs`` / ``forward_step`` do: ``input_ids`` (1, nnz), ``attention_mask=None``,
``position_ids`` restarting at 0 for each sequence, ``use_cache=False``. With no mask and no KV cache, transformers
finds the sequence starts in the position ids and builds a block-causal mask (``find_packed_sequence_indices``), so
sdpa keeps the sequences apart. Measured on the tiny Qwen3-MoE, fp32: packed vs padded logits differ by at most
3.3e-7, log-probs by 4.8e-7 (float rounding). With the KV cache on (``use_cache`` defaults to True) transformers
skips that detection and a packed sequence attends to the ones before it: that call is not verl's.

The CPU overrides keep ``use_remove_padding=False`` for now (stable_verl.config.cpu_env); the routing-replay R3
run test turns it on, so the engine's packed route path runs in CI.
"""

from __future__ import annotations

import torch

from stable_verl.models.tiny import TinyModelSpec, build_model

LENGTHS = (12, 9, 30, 5, 17, 41, 3, 26)


def _logprobs(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return torch.log_softmax(logits.float(), -1)[:-1].gather(-1, ids[1:, None])[:, 0]  # (len - 1,)


def test_verls_packed_call_matches_the_padded_call(tokenizer):
    model = build_model(TinyModelSpec(), tokenizer, seed=0).eval()
    model.config._attn_implementation = "sdpa"
    gen = torch.Generator().manual_seed(0)
    seqs = [torch.randint(5, len(tokenizer), (n,), generator=gen) for n in LENGTHS]
    ids = torch.zeros(len(seqs), max(LENGTHS), dtype=torch.long)  # right-padded batch, as use_remove_padding=False
    mask = torch.zeros_like(ids)
    for row, seq in enumerate(seqs):
        ids[row, : len(seq)], mask[row, : len(seq)] = seq, 1
    packed_ids = torch.cat(seqs)[None]  # (1, nnz)
    packed_pos = torch.cat([torch.arange(n) for n in LENGTHS])[None]  # (1, nnz), restarts per sequence
    with torch.no_grad():
        padded = model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
        packed = model(input_ids=packed_ids, attention_mask=None, position_ids=packed_pos, use_cache=False).logits[0]
        cached = model(input_ids=packed_ids, position_ids=packed_pos).logits[0]  # KV cache on: not verl's call
    starts = [0, *torch.tensor(LENGTHS).cumsum(0).tolist()]
    for row, seq in enumerate(seqs):
        got, want = packed[starts[row] : starts[row + 1]], padded[row, : len(seq)]
        torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
        torch.testing.assert_close(_logprobs(got, seq), _logprobs(want, seq), atol=1e-5, rtol=0)
    # With the cache on, every sequence after the first attends across the boundary: off by O(1) logits.
    torch.testing.assert_close(cached[: LENGTHS[0]], padded[0, : LENGTHS[0]], atol=1e-5, rtol=0)
    assert (cached[LENGTHS[0] :] - packed[LENGTHS[0] :]).abs().max() > 1e-2
