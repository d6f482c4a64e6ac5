"""Thinking evaluation (rl/thinking/evals.py): ThinkFollow scoring, budget accuracy, the plot, and `rl eval-thinking`."""
from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import torch

from rl.rollout.engines import EngineOutput
from rl.thinking.evals import BudgetPoint, make_dialogs, plot_budget_accuracy, think_follow
from rl.models import qwen3_tokenizer_dir
from rl.rollout.worker import RolloutWorker
from rl.thinking.tags import EMPTY_THINK
from tests.helpers import ROOT

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class FlagEngine:
    """Answers every prompt with a think block chosen by `policy(prompt_text)` ("think" / "no_think")."""

    dtype = torch.float32

    def __init__(self, tokenizer, policy):
        self.tokenizer, self.policy = tokenizer, policy
        self.prompts: list[str] = []

    def generate(self, prompts, max_tokens):
        outs = []
        for ids in prompts:
            text = self.tokenizer.decode(ids)
            self.prompts.append(text)
            reply = "<think>\nadding\n</think>\n\n4" if self.policy(text) == "think" else EMPTY_THINK + "4"
            new = self.tokenizer.encode(reply + "<|im_end|>", add_special_tokens=False)
            outs.append(EngineOutput(new, [-0.1] * len(new), "stop"))
        return outs

    def load_weights(self, named_tensors):
        raise AssertionError("not used")


def last_flag(prompt: str) -> str:
    """What a perfect flag follower does: the last /think or /no_think in the prompt wins."""
    flags = re.findall(r"(?<!\S)/(think|no_think)\b", prompt)
    return flags[-1] if flags else "think"


def worker_with(policy) -> RolloutWorker:
    from transformers import AutoTokenizer

    path = str(qwen3_tokenizer_dir())
    engine = FlagEngine(AutoTokenizer.from_pretrained(path), policy)
    return RolloutWorker(path, "scripted", temperature=1.0, top_p=1.0, seed=0, engine=engine)


def test_make_dialogs_draws_every_flag_kind():
    dialogs = make_dialogs(["q1?", "q2?"], n=50, turns=3, rng=random.Random(0))
    assert len(dialogs) == 50 and all(len(d) == 3 for d in dialogs)
    turns = [t for d in dialogs for t in d]
    assert any(t.endswith(" /think") for t in turns) and any(t.endswith(" /no_think") for t in turns)
    assert any(t in ("q1?", "q2?") for t in turns)
    assert make_dialogs(["q1?", "q2?"], 50, 3, random.Random(0)) == dialogs


def test_a_perfect_flag_follower_scores_one_and_sees_its_history():
    worker = worker_with(last_flag)
    dialogs = make_dialogs(["What is 2 + 2?"], n=12, turns=3, rng=random.Random(1))
    result = think_follow(worker, dialogs, max_new_tokens=32)
    assert result.score == result.last_turn == result.asked_think == result.asked_no_think == 1.0
    assert result.turns == 36 and sum(result.statuses.values()) == 36
    last_prompt = worker.engine.prompts[-1]
    assert last_prompt.count("<|im_start|>user") == 3 and last_prompt.endswith("<|im_start|>assistant\n")


def test_a_model_that_never_thinks_follows_only_no_think_turns():
    worker = worker_with(lambda prompt: "no_think")
    dialogs = make_dialogs(["What is 2 + 2?"], n=20, turns=3, rng=random.Random(2))
    result = think_follow(worker, dialogs, max_new_tokens=32)
    asked_no_think = sum(last_flag(" ".join(d[:t + 1])) == "no_think" for d in dialogs for t in range(3))
    assert result.asked_no_think == 1.0 and result.asked_think == 0.0
    assert result.score == pytest.approx(asked_no_think / 60) and 0 < result.score < 1


def test_plot_is_a_png(tmp_path: Path):
    points = [BudgetPoint(b, acc, 1.0, b, 8) for b, acc in ((0, 0.1), (16, 0.4), (32, 0.5))]
    points.append(BudgetPoint(None, 0.6, 0.0, 40.0, 8))
    path = tmp_path / "plot.png"
    plot_budget_accuracy(points, BudgetPoint(None, 0.3, 0.0, 0.0, 8), path, "test")
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 5000


@pytest.mark.slow
def test_rl_eval_thinking_on_the_tiny_model(tiny_model: Path, tmp_path: Path):
    from rl.cli import main

    out = tmp_path / "eval"
    rc = main(["eval-thinking", str(ROOT / "configs/tiny.yaml"), "--out", str(out),
               "--model", str(tiny_model), "--dialogs", "3", "--turns", "2", "--budgets", "0,4",
               "--problems", "3", "--answer-tokens", "4", "--rollout.backend", "hf", "--rollout.max_new_tokens", "8"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    follow = results["think_follow"]
    assert follow["turns"] == 6 and 0.0 <= follow["score"] <= 1.0 and 0.0 <= follow["last_turn"] <= 1.0
    points = results["budget_accuracy"]
    assert [p["budget"] for p in points] == [0, 4, None]
    assert all(0.0 <= p["accuracy"] <= 1.0 and p["n"] == 3 for p in points)
    assert points[1]["budget_hit_rate"] > 0                     # a random model does not close its thought
    assert 0.0 <= results["no_think_accuracy"]["accuracy"] <= 1.0
    assert (out / "budget_accuracy.png").read_bytes()[:8] == PNG_MAGIC
