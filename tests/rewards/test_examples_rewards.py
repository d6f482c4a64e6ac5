"""The "write your own reward" example (examples/my_reward.py, examples/my_reward.yaml, docs/rewards.md)
works as documented: loaded by import string from the YAML, scored by the reward runner as in training.

    .venv/bin/python -m pytest tests/test_examples_rewards.py -q
"""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from envs.tasks import load_task
from rewards import get_reward
from rewards.runner import RewardRunner
from rewards.spec import ScoreRequest
from rl.config import ConfigError, TaskConfig, load_config
from tests.helpers import ROOT



@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)  # the YAML's paths are relative to where `rl train` runs


def test_example_rewards_by_import_string():
    units = get_reward("examples/my_reward.py:units", unit_credit=0.3)
    assert units("It travels 120 km.", answer="120", unit="km").score == 1.0
    assert units("120", answer="120", unit="km").score == 0.3  # right number, no unit: the bound kwarg
    assert units("It travels 120 miles.", answer="120", unit="km").score == 0.3
    assert units("It travels 100 km.", answer="120", unit="km").score == 0.0
    assert units("no idea", answer="120").details == {"number": None}
    brevity = get_reward("examples/my_reward.py:brevity", max_words=4)
    assert asyncio.run(brevity("one two three")) == 1.0
    assert asyncio.run(brevity("one two three four five six seven eight")) == 0.5
    assert asyncio.run(brevity("anything", free_length=True)) is None


def test_example_config_scores_through_the_runner(in_repo):
    cfg = load_config("examples/my_reward.yaml")
    task = load_task(cfg.data.tasks[0], cfg.run.seed)
    example = ROOT / "examples" / "my_reward.py"  # made absolute at load time: the reward actors run elsewhere
    assert [s.name for s in task.rewards] == [f"{example}:units", f"{example}:brevity"]
    assert [s.key for s in task.rewards] == ["units", "brevity"]
    rows = {row["prompt"]: row for row in task.train + task.eval}
    km = next(r for r in rows.values() if r["unit"] == "km")
    books = next(r for r in rows.values() if r["free_length"])
    specs = {task.name: task.rewards}  # as the driver hands them to its actors
    completions = [(f"It travels {km['answer']} km.", km), (km["answer"], km),
                   ("Let me think about this for a very long time before I answer: the train goes fast and far, "
                    f"so it travels {km['answer']} km.", km),
                   (f"{books['answer']}", books), ("I do not know.", books)]
    with RewardRunner(specs, timeout_s=10.0) as runner:
        results = runner.score([ScoreRequest(text, row) for text, row in completions])
        stats = runner.stats()
    assert all(not r.errors for r in results), [r.errors for r in results]
    assert [r.components["units"] for r in results] == [1.0, 0.3, 1.0, 1.0, 0.0]
    long_words = len(completions[2][0].split())
    assert long_words > 20 and results[2].components["brevity"] == pytest.approx(20 / long_words)  # max_words 20
    assert [r.components["brevity"] for r in results[3:]] == [None, None]  # free_length rows: not applicable
    assert [r.reward for r in results] == pytest.approx([1.2, 0.5, 1.0 + 0.2 * 20 / long_words, 1.0, 0.0])
    assert stats["reward_none/units/brevity"] == 2 and "reward_errors/units/units" not in stats
    assert runner.specs["units"][1].timeout_s == 2.0


def test_rows_missing_a_required_field_are_named_at_load_time(tmp_path, in_repo):
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps({"prompt": "How far?", "unit": "km"}) + "\n")
    cfg = TaskConfig(name="units", source=str(data), rewards=load_config("examples/my_reward.yaml").data.tasks[0].rewards)
    with pytest.raises(ConfigError, match=r"line 1 of task 'units' is missing field\(s\) \['answer'\]"):
        load_task(cfg, 0)
