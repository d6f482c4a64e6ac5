"""The "add your own task" example (examples/tasks/, docs/tasks.md) loads and scores as documented.

    .venv/bin/python -m pytest tests/test_task_examples.py -q
"""
from __future__ import annotations

from pathlib import Path

import pytest

from envs.catalogue import score_requests
from envs.tasks import load_task
from rewards.runner import RewardRunner
from rl.config import load_config
from tests.helpers import ROOT

CONFIG = ROOT / "examples" / "tasks" / "my_tasks.yaml"


@pytest.fixture
def in_repo(monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's paths are relative to where `rl train` runs


def test_docs_point_at_the_example():
    text = (ROOT / "docs" / "tasks.md").read_text()
    assert "examples/tasks/my_tasks.yaml" in text and "examples/tasks/my_task.py" in text


def test_example_tasks_load_and_score(in_repo):
    cfg = load_config(CONFIG)
    tasks = {t.name: load_task(t, cfg.run.seed) for t in cfg.data.tasks}
    assert set(tasks) == {"word_problems", "reverse_words", "arithmetic"}
    problems, words = tasks["word_problems"], tasks["reverse_words"]
    assert len(problems.eval) == 4 and problems.train[0]["prompt"] and problems.train[0]["answer"]
    assert cfg.data.tasks[2].weight_at(10) == 1.0 and cfg.data.dynamic_sampling
    row_p, row_w = problems.train[0], words.train[0]
    requests = (score_requests(problems, {**row_p, "response_tokens": 10, "max_new_tokens": 32},
                               [f"The answer is {row_p['answer']}.", "The answer is 1000001."])
                + score_requests(words, row_w, [row_w["word"][::-1], row_w["word"]]))
    with RewardRunner({n: t.rewards for n, t in tasks.items()}, timeout_s=30.0) as runner:
        right_p, wrong_p, right_w, wrong_w = runner.score(requests)
    assert right_p.components == {"math": 1.0, "overlong": 0.0} and wrong_p.components["math"] == 0.0
    assert right_w.reward == 1.0 and wrong_w.reward == 0.0


def test_example_task_row_without_its_field_fails_at_load(in_repo, tmp_path):
    from envs.tasks import check_rows

    cfg = load_config(CONFIG)
    words = load_task(cfg.data.tasks[1], 0)
    with pytest.raises(ValueError, match=r"row 1 of task 'reverse_words' is missing field\(s\) \['word'\]"):
        check_rows([{"prompt": "x"}], words.rewards, "reverse_words", "my rows")
