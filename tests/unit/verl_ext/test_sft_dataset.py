"""The cached SFT dataset returns exactly verl's items, built once, as copies; verl's own loader finds it."""

from __future__ import annotations

import torch
from omegaconf import OmegaConf
from verl.utils.dataset.multiturn_sft_dataset import MultiTurnSFTDataset
from verl.utils.import_utils import load_extern_object

from stable_verl.tasks.arithmetic import sample_problems
from stable_verl.tasks.datasets import sft_rows
from stable_verl.train.verl_command import SFT_DATASET
from stable_verl.verl_ext.sft_dataset import CachedMultiTurnSFTDataset


def _datasets(tmp_path, tokenizer):
    path = tmp_path / "sft.parquet"
    sft_rows(sample_problems(6, 2, seed=0, max_operand=5), "verbose", shortcut_rate=0.5).to_parquet(path, index=False)
    config = OmegaConf.create({"pad_mode": "no_padding", "max_length": 128, "truncation": "error"})
    return MultiTurnSFTDataset(str(path), tokenizer, config), CachedMultiTurnSFTDataset(str(path), tokenizer, config)


def test_cached_items_equal_verls_and_are_copies(tmp_path, tokenizer, monkeypatch):
    plain, cached = _datasets(tmp_path, tokenizer)
    assert len(cached) == len(plain) == 6
    for i in range(len(plain)):
        want, got = plain[i], cached[i]
        assert want.keys() == got.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=0)
    first = cached[0]["input_ids"]
    first[:] = -1  # a caller editing its item in place must not change the next visit
    assert (cached[0]["input_ids"] == plain[0]["input_ids"]).all()

    calls = []
    monkeypatch.setattr(MultiTurnSFTDataset, "__getitem__", lambda self, i: calls.append(i) or {"x": torch.ones(1)})
    _, fresh = _datasets(tmp_path, tokenizer)
    for _ in range(3):
        fresh[4]
    assert calls == [4]  # tokenized on the first visit only


def test_verls_loader_resolves_the_named_class():
    assert load_extern_object(*SFT_DATASET) is CachedMultiTurnSFTDataset
