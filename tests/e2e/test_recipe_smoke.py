"""`rl recipe --smoke` end to end on the tiny random model: the cold-start stage (scripted agent episodes +
procedural chats -> rl sft), then distillation with the cold-start model as the teacher (teacher sampling,
off-policy SFT on its kept answers, on-policy rl distill from there), the evaluation suite on the base model
and after each stage, the table, and a restart that finds the work done. The other stages are `rl filter`,
`rl build-fusion-data` and `rl train` runs with the same plumbing (tests/rl/test_recipe.py checks their
order and chaining); the whole smoke recipe on the packaged model is the README's command."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.ray]

SMALL_RL = {"rollout.kv_cache_gb": 0.25, "rollout.max_new_tokens": 16, "rollout.prompts_per_step": 2,
            "rollout.group_size": 2, "learner.micro_batch_size": 4, "logging.progress_bar": False}


def teacher_data_config(tmp_path: Path) -> Path:
    """distill_tiny.yaml (hard switch: the empty think block pre-filled) scored by a reward that passes every
    answer, so the random teacher's samples are kept and off-policy SFT runs."""
    (tmp_path / "always.py").write_text("def always(completion, **row):\n    return 1.0\n")
    cfg = yaml.safe_load((ROOT / "configs" / "distill_tiny.yaml").read_text())
    cfg["rollout"].update({"kv_cache_gb": 0.25, "max_new_tokens": 8})
    cfg["data"]["tasks"] = [{"name": "arithmetic", "size": 32, "eval_size": 4,
                             "rewards": [{"name": f"{tmp_path / 'always.py'}:always"}]}]
    path = tmp_path / "teacher_data.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def recipe_file(tmp_path: Path, model: Path) -> Path:
    recipe = {
        "name": "smoke", "model": str(model), "stages": ["cold_start", "distill"],
        "eval": {"overrides": {"rollout.kv_cache_gb": 0.25, "rollout.max_new_tokens": 48, "data.tasks": [
            {"name": "arithmetic", "size": 32, "eval_size": 8, "thinking_ratio": 0.5},
            {"name": "agent_game", "size": 32, "eval_size": 8, "options": {"width": 10, "guesses": 4}}]}},
        "cold_start": {"overrides": {"sft.max_seq_len": 1024, "logging.progress_bar": False},
                       "agent_config": str(ROOT / "configs" / "agent_tiny.yaml")},
        "distill": {"teacher": "cold_start", "overrides": {**SMALL_RL, "data.tasks.0.size": 32},
                    "data_config": str(teacher_data_config(tmp_path)),
                    "sft_overrides": {"logging.progress_bar": False, "sft.batch_size": 4}},
        "table": ["arithmetic/accuracy", "tool/success", "think_follow/no_think"],
    }
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def run_recipe(path: Path, out: Path) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "rl.cli", "recipe", str(path), "--output-dir", str(out), "--smoke"],
                          capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_smoke_recipe_runs_its_stages_evaluates_each_and_resumes(tiny_model, tmp_path):
    path, out = recipe_file(tmp_path, tiny_model), tmp_path / "recipe"
    proc = run_recipe(path, out)
    state = json.loads((out / "recipe.json").read_text())
    assert state["smoke"] is True and list(state["rows"]) == ["base", "cold_start", "distill"]
    for row in state["rows"].values():
        metrics = row["metrics"]
        for key in ("arithmetic/accuracy", "agent_game/accuracy", "tool/success", "tool/called", "think_follow/score",
                    "think_follow/no_think", "budget/0", "budget/16", "budget/none", "no_think/accuracy"):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics)
        assert metrics["arithmetic/accuracy/ci95"] >= 0.0
    cold, distill = state["rows"]["cold_start"], state["rows"]["distill"]
    demos = [json.loads(line) for line in (out / "cold_start" / "agent_demos.jsonl").read_text().splitlines()]
    assert {d["task"] for d in demos} == {"agent_game", "agent_python"} and cold["data_rows"] == len(demos) + 16
    assert cold["model"].startswith(str(out / "cold_start" / "run" / "checkpoints"))
    assert distill["teacher"] == cold["model"] and distill["student"] == str(tiny_model)
    assert distill["off_policy_rows"] >= 4  # the teacher's answers, then SFT of the student, then on-policy:
    on_policy = yaml.safe_load((out / "distill" / "on_policy" / "config.yaml").read_text())
    assert on_policy["model"]["path"].startswith(str(out / "distill" / "off_policy" / "checkpoints"))
    assert on_policy["distill"]["teacher"] == cold["model"]
    assert distill["model"].startswith(str(out / "distill" / "on_policy" / "checkpoints"))
    assert distill["reverse_kl"]["first"] > 0.0 and distill["reverse_kl"]["steps"] == 1  # 2 smoke steps: 1 each
    # per-prompt scores for paired changes: the same prompts in every row, each stage against its start
    assert cold["start"] == "base" and distill["start"] == "base"
    for name in ("arithmetic/accuracy", "tool/success", "budget/none", "no_think/accuracy"):
        assert len({len(row["per_prompt"][name]) for row in state["rows"].values()}) == 1, name
    assert "| distill (base) |" in (out / "recipe.md").read_text()
    assert not list(out.glob("**/checkpoints/*/deepspeed"))  # finished stages keep models, not optimizer states
    assert "| cold_start |" in proc.stdout and (out / "recipe.png").stat().st_size > 1000

    # A recipe killed during distillation's evaluation: its row is not in recipe.json. The rerun finds the
    # teacher's data and the finished run (its last checkpoint is its final step: not started again) and
    # evaluates again.
    del state["rows"]["distill"]
    (out / "recipe.json").write_text(json.dumps(state))
    steps_before = (out / "distill" / "on_policy" / "metrics.jsonl").read_text()
    run_recipe(path, out)
    state = json.loads((out / "recipe.json").read_text())
    assert list(state["rows"]) == ["base", "cold_start", "distill"]
    assert (out / "distill" / "on_policy" / "metrics.jsonl").read_text() == steps_before
