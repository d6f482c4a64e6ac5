"""Shared by the end-to-end tests: a small run config for the tiny random models (tests/conftest.py)."""
from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
"""tests/: its data/ folder holds the rewards and data files the tests load by path."""
ROOT = TESTS.parent
"""The repository (configs/, examples/)."""


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
