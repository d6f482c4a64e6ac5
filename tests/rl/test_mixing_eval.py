"""Task mixing (curriculum weights, dynamic-sampling draws, modes from flags), DAPO dynamic sampling in
the driver, per-task accuracy metrics, periodic evaluation (pass@k) and `rl report`. CPU, no Ray.

    .venv/bin/python -m pytest tests/test_mixing_eval.py -q
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from envs.tasks import load_task
from rewards.spec import RewardSpec, ScoreResult
from rl.config import ConfigError, TaskConfig, load_config
from rl.data import TaskMix, informative
from rl.round import ScoredRollouts, dynamic_sampling
from rl.evaluate import evaluate, pass_at_k, summarize
from rl.metrics import rollout_metrics
from rl.models import qwen3_tokenizer_dir
from rl.report import eval_table, write_report
from rl.types import Rollout, RolloutRequest


def tasks_for(*configs: TaskConfig):
    return [load_task(c, seed=0) for c in configs]


# --------------------------------------------------------------------------------------- curriculum
def test_weight_schedule_interpolates_and_holds():
    cfg = TaskConfig(name="arithmetic", weight=5.0, weight_schedule=[(10, 0.0), (20, 2.0)])
    assert [cfg.weight_at(s) for s in (0, 10, 15, 20, 99)] == [0.0, 0.0, 1.0, 2.0, 2.0]
    assert TaskConfig(name="arithmetic", weight=3.0).weight_at(7) == 3.0


def test_curriculum_shifts_the_mix_and_stays_a_function_of_seed_and_step():
    easy = TaskConfig(name="arithmetic", size=50, eval_size=0, weight_schedule=[(0, 1.0), (100, 0.0)])
    hard = TaskConfig(name="competition_math", size=50, eval_size=0, weight_schedule=[(0, 0.0), (100, 1.0)])
    mix = TaskMix(tasks_for(easy, hard), seed=3)
    early = Counter(d.task.name for d in mix.sample(0, 64))
    late = Counter(d.task.name for d in mix.sample(100, 64))
    assert early == {"arithmetic": 64} and late == {"competition_math": 64}
    middle = Counter(d.task.name for s in range(45, 56) for d in mix.sample(s, 16))
    assert 0.3 < middle["arithmetic"] / 176 < 0.7
    # the same (seed, step) gives the same prompts from a fresh mix (a resumed run)
    again = TaskMix(tasks_for(easy, hard), seed=3)
    assert [d.row for d in again.sample(100, 8)] == [d.row for d in mix.sample(100, 8)]


def test_schedule_validation():
    with pytest.raises(ConfigError, match="increasing steps"):
        load_config(None, ["data.tasks=[{name: arithmetic, weight_schedule: [[10, 1], [5, 2]]}]"])
    with pytest.raises(ConfigError, match="all weights are 0 at step 50"):
        load_config(None, ["data.tasks=[{name: arithmetic, weight_schedule: [[0, 1], [50, 0]]}]"])


def test_extra_draws_do_not_shift_the_main_stream():
    mix = TaskMix(tasks_for(TaskConfig(name="arithmetic", size=30, eval_size=0)), seed=1)
    plain = TaskMix(tasks_for(TaskConfig(name="arithmetic", size=30, eval_size=0)), seed=1)
    extra = mix.sample_extra(0, 1, 5)
    assert len(extra) == 5 and extra == mix.sample_extra(0, 1, 5)
    assert [d.row for d in mix.sample(1, 4)] == [d.row for d in plain.sample(1, 4)]
    assert [d.row for d in mix.sample_extra(0, 2, 5)] != [d.row for d in extra]


def test_modes_come_from_flags_for_flag_tasks():
    (task,) = tasks_for(TaskConfig(name="format_think", size=40, eval_size=0, thinking_ratio=0.0))
    mix = TaskMix([task], seed=0)
    for draw in mix.sample(0, 20):
        assert draw.thinking == draw.row["prompt"].endswith("/think")
        messages = task.messages(draw.row, draw.thinking)
        assert messages[-1]["content"] == draw.row["prompt"]  # no second flag appended


# ---------------------------------------------------------------------------------- dynamic sampling
def fake_round(rewards: list[float], tag: str, G: int = 2) -> ScoredRollouts:
    n = len(rewards)
    rollouts = [Rollout(RolloutRequest(f"{tag}-{i // G}", "t", [1], 4, False), [2], [1], [0.0], "x", "stop")
                for i in range(n)]
    scored = [ScoreResult(r, {"c": r}, {}, False, {}) for r in rewards]
    return ScoredRollouts(rollouts, [f"{tag}{i}" for i in range(n)], scored, t_generate=1.0, t_reward=0.5)


def test_dynamic_sampling_skips_zero_variance_groups_and_refills():
    cfg = load_config(None, ["rollout.group_size=2", "rollout.prompts_per_step=3", "data.dynamic_sampling=true"])
    calls = []

    def one_round(round_: int, prompts: int) -> ScoredRollouts:
        calls.append((round_, prompts))
        return fake_round([0.0, 1.0] + [1.0, 1.0] * (prompts - 1), f"r{round_}")

    first = fake_round([1.0, 1.0, 0.0, 1.0, 0.0, 0.0], "r0")  # groups: flat, informative, flat
    merged, metrics = dynamic_sampling(first, one_round, cfg)
    assert calls == [(1, 2), (2, 1)]  # 1 informative, then 1 more per round
    assert [r.request.uid for r in merged.rollouts] == ["r0-1", "r0-1", "r1-0", "r1-0", "r2-0", "r2-0"]
    assert all(informative([s.reward for s in merged.scored[i:i + 2]]) for i in range(0, 6, 2))
    assert metrics == {"rollout/dynamic_skipped": 3.0, "rollout/dynamic_rounds": 2.0, "rollout/dynamic_filled": 0.0}
    assert merged.t_generate == 3.0 and merged.t_reward == 1.5


def test_dynamic_sampling_fills_with_flat_groups_when_rounds_run_out():
    cfg = load_config(None, ["rollout.group_size=2", "rollout.prompts_per_step=2", "data.dynamic_sampling=true",
                             "data.dynamic_sampling_rounds=1"])
    merged, metrics = dynamic_sampling(fake_round([1.0, 1.0, 0.0, 0.0], "r0"),
                                       lambda round_, prompts: fake_round([0.5, 0.5] * prompts, "r1"), cfg)
    assert len(merged.rollouts) == 4  # the batch keeps prompts_per_step x group_size samples
    assert metrics == {"rollout/dynamic_skipped": 2.0, "rollout/dynamic_rounds": 1.0, "rollout/dynamic_filled": 2.0}


# ------------------------------------------------------------------------------------------ metrics
def test_accuracy_and_thinking_ratio_per_task():
    rollouts = fake_round([1.0, 0.0, 0.6, 0.2], "a").rollouts
    rollouts[0].request.thinking = True
    results = [ScoreResult(r, {"main": r, "aux": None}, {}, False, {}) for r in (1.0, 0.0, 0.6, 0.2)]
    results[3].components["main"] = None  # a failed component counts as unsolved
    completions = ["<think>\nhm\n</think>\n\nA", "<think>\n\n</think>\n\nB", "C", "D"]
    m = rollout_metrics(rollouts, results, completions, torch.tensor([1.0, 0.0, 0.6, 0.2]), 2,
                        {"t": ("main", 0.5)})
    assert m["reward/t/accuracy"] == 0.5
    assert m["rollout/t/thinking_ratio"] == 0.25 and m["thinking/t/thought_rate"] == 0.25
    assert "reward/t/accuracy" not in rollout_metrics(rollouts, results, completions, torch.zeros(4), 2)


# ---------------------------------------------------------------------------------------- evaluation
def test_pass_at_k_estimator():
    assert pass_at_k(4, 0, 4) == 0.0 and pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 1, 1) == 0.25
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    with pytest.raises(ValueError):
        pass_at_k(2, 3, 1)


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(qwen3_tokenizer_dir())


def test_evaluate_rolls_out_k_samples_per_eval_prompt(tokenizer):
    cfg = load_config(None, ["run.eval_samples=3", "run.eval_prompts=2"])
    tasks = tasks_for(TaskConfig(name="arithmetic", size=20, eval_size=4),
                      TaskConfig(name="stem_mcq", size=20, eval_size=4))
    seen = []

    def run_round(requests, rows, prefixes):
        seen.append(requests)
        # arithmetic: the first sample of each prompt solves it; stem_mcq: nothing is solved
        scores = [ScoreResult(1.0, {"math": 1.0 if r.task == "arithmetic" and i % 3 == 0 else 0.0}, {}, False, {})
                  if r.task == "arithmetic" else ScoreResult(0.0, {"choice": 0.0}, {}, False, {})
                  for i, r in enumerate(requests)]
        return [], scores

    metrics = evaluate(5, tasks, cfg, tokenizer, run_round)
    (requests,) = seen
    assert len(requests) == 2 * 2 * 3 and len({r.uid for r in requests}) == 4
    assert metrics["eval/arithmetic/pass@1"] == pytest.approx(1 / 3) and metrics["eval/arithmetic/pass@3"] == 1.0
    assert metrics["eval/stem_mcq/pass@3"] == 0.0 and metrics["eval/pass@3"] == 0.5
    assert metrics["eval/arithmetic/prompts"] == 2.0


def test_summarize_uses_the_task_threshold():
    (task,) = tasks_for(TaskConfig(name="translation", size=20, eval_size=4, success_threshold=0.5))
    scored = [ScoreResult(v, {"translation": v}, {}, False, {}) for v in (0.4, 0.6)]
    assert summarize([(task, 0)], scored, 2)["eval/translation/pass@1"] == 0.5


# -------------------------------------------------------------------------------------------- report
def test_report_writes_png_and_html(tmp_path: Path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": s, "reward/mean": 0.1 * s, "reward/arithmetic/mean": 0.2 * s, "reward/arithmetic/accuracy": 0.1,
                "reward/mode_no_think/mean": 0.3, "reward/rag/mean": 0.05, "rollout/rag/response_len": 30.0}
               for s in (1, 2, 3)]
    records[-1].update({"eval/arithmetic/pass@1": 0.25, "eval/arithmetic/pass@4": 0.75, "eval/pass@1": 0.25})
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    page, png = write_report(run)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    text = page.read_text()
    assert "Evaluation at step 3" in text and "0.750" in text and ">rag<" in text and "mode_no_think" not in text
    assert eval_table(records) == (3, {"arithmetic": {"pass@1": 0.25, "pass@4": 0.75}})
    with pytest.raises(FileNotFoundError, match="metrics.jsonl"):
        write_report(tmp_path / "nothing")
