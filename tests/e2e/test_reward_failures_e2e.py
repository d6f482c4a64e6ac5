"""Acceptance: a reward that raises, hangs forever or returns garbage on some samples does not stop a
training run, and the run's metrics show it. Through `rl.driver.train` with the tiny random model.

    .venv/bin/python -m pytest tests/e2e/test_reward_failures_e2e.py -q      (slow: ~2-4 min on 2 cores)
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from rl.config import load_config
from rl.driver import train
from tests.helpers import TESTS, tiny_overrides

DATA = TESTS / "data"


@pytest.mark.ray
@pytest.mark.slow
def test_raising_hanging_and_garbage_rewards_are_counted_and_the_run_completes(tiny_model, tmp_path):
    counter = tmp_path / "calls.txt"  # tests/data/flaky_rewards.py: call n misbehaves by n % 5
    tasks = ("[{name: arithmetic, size: 64, eval_size: 8, rewards: ["
             f"{{name: '{DATA / 'flaky_rewards.py'}:flaky', kwargs: {{counter: '{counter}'}}}}, "
             f"{{name: '{DATA / 'user_rewards.py'}:char_count', weight: 0.5}}]}}]")
    cfg = load_config("configs/tiny.yaml", tiny_overrides(tiny_model, tmp_path / "run", **{
        "data.tasks": tasks, "reward.timeout_s": 3, "rollout.backend": "hf"}))
    out = train(cfg)

    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2]
    assert (out / "checkpoints" / "step_000002").is_dir()

    def total(key: str) -> float:
        return sum(m.get(key, 0.0) for m in metrics)

    kinds = Counter(counter.with_suffix(".log").read_text().split())
    assert sum(kinds.values()) == 16 and kinds["hang"] >= 3 and kinds["raise"] >= 3  # 2 steps x 8 samples
    assert total("reward_calls/arithmetic/flaky") == 16
    assert total("reward_errors/arithmetic/flaky") == kinds["raise"] + kinds["string"] + kinds["nan"]
    assert total("reward_timeouts/arithmetic/flaky") == kinds["hang"]
    assert total("reward_worker_restarts") == kinds["hang"]  # each hung process was killed and replaced
    # The healthy reward scored every sample, including those whose other reward failed.
    assert total("reward_calls/arithmetic/char_count") == 16
    assert total("reward_errors/arithmetic/char_count") == total("reward_timeouts/arithmetic/char_count") == 0

    rows = [json.loads(line) for step in (1, 2)
            for line in (out / "rollouts" / f"step_{step:06d}.jsonl").read_text().splitlines()]
    errors = Counter(row["errors"].get("flaky", "ok").split(":")[0] for row in rows)
    assert errors == {"ok": kinds["ok"], "timeout": kinds["hang"], "RuntimeError": kinds["raise"],
                      "TypeError": kinds["string"], "ValueError": kinds["nan"]}
    for row in rows:
        assert row["components"]["char_count"] is not None
        if "flaky" in row["errors"]:
            assert row["components"]["flaky"] is None
            assert row["reward"] == pytest.approx(0.5 * row["components"]["char_count"])
