"""`rl filter` (rl/query_filter.py): k samples per query, pass rates, the band, the task file it writes,
and a resumed run that samples only the queries not scored before."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from envs.tasks import load_task
from rl.config import ConfigError, load_config
from rl.query_filter import FilterPlan, plan_filter, read_scored, write_results
from tests.helpers import ROOT, TESTS

EVEN = f"{{name: '{TESTS / 'data' / 'user_rewards.py'}:even_length'}}"


def _cfg(tmp_path, *extra: str, tasks: str | None = None):
    tasks = tasks or f"[{{name: arithmetic, size: 8, eval_size: 2, rewards: [{EVEN}]}}]"
    return load_config("configs/tiny.yaml", [f"data.tasks={tasks}", f"run.output_dir={tmp_path}", *extra])


def test_arguments_that_cannot_work_are_named(tmp_path):
    two = "[{name: arithmetic, size: 8, eval_size: 2}, {name: countdown, size: 8, eval_size: 2}]"
    with pytest.raises(ConfigError, match=r"2 tasks \['arithmetic', 'countdown'\]: choose one with --task NAME"):
        plan_filter(_cfg(tmp_path, tasks=two), None, 8, (0.1, 0.9), None)
    assert plan_filter(_cfg(tmp_path, tasks=two), "countdown", 8, (0.1, 0.9), 3).queries == 3
    with pytest.raises(ConfigError, match="--task 'gsm8k' is not one of"):
        plan_filter(_cfg(tmp_path), "gsm8k", 8, (0.1, 0.9), None)
    with pytest.raises(ConfigError, match=r"--band 0.9 0.1: give 0 <= low <= high <= 1"):
        plan_filter(_cfg(tmp_path), None, 8, (0.9, 0.1), None)
    with pytest.raises(ConfigError, match="--k 1: a pass rate needs at least 2 samples"):
        plan_filter(_cfg(tmp_path), None, 1, (0.1, 0.9), None)
    judged = "[{name: arithmetic, size: 8, eval_size: 2, rewards: [{name: math}, {name: judge}]}]"
    with pytest.raises(ConfigError, match="rule-based rewards only"):
        plan_filter(_cfg(tmp_path, tasks=judged), None, 8, (0.1, 0.9), None)


def test_band_verdicts_stats_and_a_task_file_rl_train_reads(tmp_path):
    cfg = _cfg(tmp_path)
    task = load_task(cfg.data.tasks[0], cfg.run.seed)
    plan = FilterPlan(task, queries=5, k=4, low=0.25, high=0.75)
    done = {0: (0, 4), 1: (1, 4), 2: (2, 4), 3: (3, 4), 4: (4, 4)}
    out = tmp_path / "kept.jsonl"
    stats = write_results(out, plan, done)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pass_rate"] for r in rows] == [0.25, 0.5, 0.75]                 # the band's ends are inside
    assert [r["prompt"] for r in rows] == [task.train[i]["prompt"] for i in (1, 2, 3)]
    assert (stats["kept"], stats["too_easy"], stats["too_hard"]) == (3, 1, 1)
    assert stats["pass_histogram"] == {"0/4": 1, "1/4": 1, "2/4": 1, "3/4": 1, "4/4": 1}
    assert json.loads((tmp_path / "kept.jsonl.stats.json").read_text()) == stats

    # the printed data.tasks entry trains on the kept rows with the task's own rewards and threshold
    entry = stats["task_entry"]
    train_cfg = load_config("configs/tiny.yaml", [f"data.tasks={json.dumps([{**entry, 'eval_size': 1}])}"])
    filtered = load_task(train_cfg.data.tasks[0], 0)
    assert filtered.name == "arithmetic" and len(filtered.train) + len(filtered.eval) == 3
    assert [s.name for s in filtered.rewards] == [s.name for s in task.rewards]
    assert filtered.success_threshold == task.success_threshold


def test_scored_log_lines_cut_by_a_kill_are_scored_again(tmp_path):
    log = tmp_path / "kept.jsonl.scored.jsonl"
    log.write_text('{"index": 0, "passes": 2, "samples": 4}\n{"index": 1, "passes": 3, "samp')
    assert read_scored(log) == {0: (2, 4)}
    assert read_scored(tmp_path / "missing.jsonl") == {}


@pytest.mark.slow
@pytest.mark.ray
def test_rl_filter_samples_k_per_query_and_resumes_from_its_scored_log(tiny_model, tmp_path):
    out = tmp_path / "kept.jsonl"
    log = tmp_path / "kept.jsonl.scored.jsonl"
    log.write_text('{"index": 0, "passes": 4, "samples": 4}\n{"index": 1, "pas')  # scored before a kill
    tasks = f"[{{name: arithmetic, size: 8, eval_size: 2, rewards: [{EVEN}]}}]"
    proc = subprocess.run([sys.executable, "-m", "rl.cli", "filter", "configs/tiny.yaml", "--out", str(out), "--k", "4",
                           "--band", "0.25", "0.75", "--max-queries", "6", "--model.path", str(tiny_model),
                           "--data.tasks", tasks, "--rollout.backend", "hf", "--rollout.prompts_per_step", "2",
                           "--rollout.max_new_tokens", "8", "--rollout.temperature", "1.0",
                           "--run.output_dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    scored = [json.loads(line) for line in log.read_text().splitlines()[2:]]
    assert sorted(s["index"] for s in scored) == [1, 2, 3, 4, 5], "only the queries not scored before"
    assert all(s["samples"] == 4 and 0 <= s["passes"] <= 4 for s in scored)
    passes = {0: 4, **{s["index"]: s["passes"] for s in scored}}
    stats = json.loads((tmp_path / "kept.jsonl.stats.json").read_text())
    kept = [i for i in range(6) if 1 <= passes[i] <= 3]
    assert stats["kept"] == len(kept) and stats["queries"] == 6 and stats["too_easy"] >= 1  # row 0: 4 of 4
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["pass_rate"] for r in rows] == [passes[i] / 4 for i in kept]
    assert f"kept {len(kept)} of 6 queries" in proc.stdout and f"source: {out}" in proc.stdout


def test_a_checkpoint_folder_stands_for_its_model_folder(tiny_model, tmp_path):
    """Every model path (model.path, --model, distill.teacher) takes RUN/checkpoints/step_N as well."""
    from rl.models import resolve_model_path

    step = tmp_path / "checkpoints" / "step_000004"
    (step / "model").mkdir(parents=True)
    (step / "model" / "config.json").write_text("{}")
    assert resolve_model_path(str(step)) == str(step / "model")
    assert resolve_model_path(str(tiny_model)) == str(tiny_model)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_model_path(str(tmp_path / "checkpoints" / "step_000009"))
