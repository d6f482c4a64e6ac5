"""Shared fixtures: tiny random models built locally (no hub), and a small run config for them."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

TESTS = Path(__file__).parent


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random Qwen3 (hidden 64, 2 layers) with the real Qwen3 tokenizer, saved in fp32."""
    from rl.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "qwen3-tiny", arch="qwen3", hidden_size=64)


@pytest.fixture(scope="session")
def tiny_moe_model(tmp_path_factory) -> Path:
    from rl.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "qwen3-moe-tiny", arch="qwen3_moe", hidden_size=64)


def tiny_overrides(model: Path, out: Path, **extra: object) -> list[str]:
    """Overrides that shrink configs/tiny.yaml to seconds per step on a random model."""
    values = {
        "model.path": str(model), "run.output_dir": str(out), "run.steps": 2,
        "rollout.prompts_per_step": 2, "rollout.group_size": 4, "rollout.max_new_tokens": 8,
        "rollout.kv_cache_gb": 0.25, "learner.micro_batch_size": 4, "learner.lr": 1e-3,
        "logging.progress_bar": False, "checkpoint.every": 1,
        "data.tasks": ("[{name: arithmetic, size: 64, eval_size: 8, rewards: "
                       f"[{{name: '{TESTS / 'data' / 'user_rewards.py'}:char_count'}}]}}]"),
    }
    values.update(extra)
    return [f"{k}={v}" for k, v in values.items()]
