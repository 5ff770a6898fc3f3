"""verl's multi-turn SFT dataset, tokenized once per conversation instead of once per visit.

``MultiTurnSFTDataset.__getitem__`` tokenizes a conversation message by message and then again as a whole (its
sanity check) every time the sampler visits it. An SFT run over a small set sees each conversation many times (the
demo: 800 steps of 32 over 800 conversations, 32 visits each), and on the CPU that tokenization was 11% of an SFT
step (py-spy, 2026-11-28). The items are a pure function of the index, so this subclass keeps the first result and
returns copies of it. It plugs in through verl's own seam, ``data.custom_cls`` (``train.verl_command.sft_argv``).
"""

from __future__ import annotations

from typing import Any

import torch
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset


def _copy(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.clone()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


class CachedMultiTurnSFTDataset(MultiTurnSFTDataset):
    """``MultiTurnSFTDataset`` whose items are built once; later visits get copies (the trainer may edit them)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._items: dict[int, dict[str, Any]] = {}

    def __getitem__(self, item: int) -> dict[str, Any]:
        key = int(item)
        if key not in self._items:
            self._items[key] = super().__getitem__(key)
        return _copy(self._items[key])
