"""Tiny model and tokenizer factories: shapes vLLM-CPU accepts, determinism, chat template."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from stable_verl.models.tiny import TinyModelSpec, build_model, save_tiny_model
from stable_verl.models.tokenizer import IM_END, train_tokenizer
from stable_verl.tasks.datasets import TaskSpec, tokenizer_corpus


def test_tokenizer_is_deterministic_and_splits_digits(tokenizer, task_spec):
    again = train_tokenizer(tokenizer_corpus(task_spec))
    assert again.get_vocab() == tokenizer.get_vocab()
    digits = [t for t in tokenizer.convert_ids_to_tokens(tokenizer("1234")["input_ids"])]
    assert digits == ["1", "2", "3", "4"]


def test_chat_template_round_trips(tokenizer):
    messages = [{"role": "user", "content": "Compute: 3 + 4"}, {"role": "assistant", "content": "#### 7"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False)
    assert text == "<|im_start|>user\nCompute: 3 + 4<|im_end|>\n<|im_start|>assistant\n#### 7<|im_end|>\n"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    assert tokenizer.eos_token == IM_END
    prompt = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>assistant\n")


def test_moe_shapes_match_the_cpu_stack(tokenizer):
    model = build_model(TinyModelSpec(), tokenizer, seed=0)
    cfg = model.config
    assert (cfg.hidden_size, cfg.head_dim, cfg.num_experts, cfg.num_experts_per_tok) == (128, 64, 8, 2)
    assert cfg.num_hidden_layers == 2 and cfg.vocab_size == len(tokenizer)
    routers = [m for name, m in model.named_modules() if name.endswith("mlp.gate")]
    assert len(routers) == cfg.num_hidden_layers  # one router per decoder layer (route tensors index by layer)


def test_same_seed_same_weights_other_seed_other_weights(tokenizer):
    a, b = build_model(TinyModelSpec(), tokenizer, 0), build_model(TinyModelSpec(), tokenizer, 0)
    c = build_model(TinyModelSpec(), tokenizer, 1)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.lm_head.weight, c.lm_head.weight)


@pytest.mark.parametrize("kind", ["moe", "dense"])
def test_saved_directory_loads_and_generates(tmp_path, tokenizer, kind):
    out = save_tiny_model(tmp_path / kind, TinyModelSpec(kind=kind), tokenizer, seed=0)
    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    assert model.config.model_type == ("qwen3_moe" if kind == "moe" else "qwen3")
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "1 + 1"}], add_generation_prompt=True, return_tensors="pt"
    )
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    out_ids = model.generate(ids, max_new_tokens=4, do_sample=False)
    assert out_ids.shape[1] > ids.shape[1]


def test_bad_specs_are_rejected():
    with pytest.raises(ValueError, match="head_dim"):
        TinyModelSpec(hidden_size=128, num_heads=4, head_dim=64)
    with pytest.raises(ValueError, match="top_k"):
        TinyModelSpec(top_k=9)
    with pytest.raises(ValueError, match="kind"):
        TinyModelSpec(kind="mamba")
    with pytest.raises(ValueError, match="hard_difficulty"):
        TaskSpec(difficulty=3, hard_difficulty=2)
