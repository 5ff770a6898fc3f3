"""Why the CPU path turns off verl's remove-padding: sdpa does not keep packed sequences apart.

verl packs a micro batch into one row (``use_remove_padding=True``) and relies on flash-attn's varlen
kernels to stop attention at sequence boundaries. Without flash-attn (CPU, sdpa), a packed sequence
attends to the ones before it. If this test starts failing, transformers learned to separate packed
sequences for sdpa and the override in ``stable_verl.pipeline.cpu_env`` can go.
"""

from __future__ import annotations

import torch

from stable_verl.models.tiny import TinyModelSpec, build_model


def test_sdpa_mixes_packed_sequences(tokenizer):
    model = build_model(TinyModelSpec(), tokenizer, seed=0)
    model.config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    a, b = torch.randint(5, len(tokenizer), (1, 12)), torch.randint(5, len(tokenizer), (1, 9))
    with torch.no_grad():
        alone_a, alone_b = model(a).logits, model(b).logits
        packed = model(torch.cat([a, b], 1), position_ids=torch.cat([torch.arange(12), torch.arange(9)])[None]).logits
    assert torch.allclose(packed[0, :12], alone_a[0], atol=1e-5)  # the first sequence is unaffected
    assert (packed[0, 12:] - alone_b[0]).abs().max() > 1e-2  # the second one attends across the boundary
