"""End to end through the real stack: `rl train` -> local Ray cluster -> vLLM rollout worker, reward
worker, DeepSpeed learner -> metrics, rollouts, checkpoints; resume after SIGKILL; failing user rewards.
Each `rl train` pays ~30-60 s of actor start-up here, so one run checks several options together."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import TESTS, tiny_overrides

pytestmark = [pytest.mark.slow, pytest.mark.ray]
RL = [sys.executable, "-m", "rl.cli"]
DATA = TESTS / "data"


def _run(args: list[str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(RL + args, capture_output=True, text=True, timeout=timeout)


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_steps_train_the_model_and_resume_after_sigkill_with_a_teacher(tiny_model, tmp_path):
    """4 steps, the run SIGKILLed once step 2's checkpoint is on disk, then `rl distill --resume`: what a
    run leaves (metrics, rollouts, checkpoints, the console) and that no step is lost or doubled. The
    same run distils from a teacher (another random model) mixed with the reward: the teacher actor
    starts, resumes with the run, and its per-token reverse KL is logged every step."""
    from rl.models import build_tiny_model

    teacher = build_tiny_model(tmp_path / "teacher", hidden_size=64, seed=1)
    run = tmp_path / "run"
    args = ["distill", "configs/tiny.yaml", "--teacher", str(teacher),
            *tiny_overrides(tiny_model, run, **{"run.steps": 4, "distill.reward_weight": 1.0})]
    proc = subprocess.Popen(RL + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 400
        while not (run / "checkpoints" / "step_000002").exists():
            assert proc.poll() is None, "the run ended before it was killed"
            assert time.time() < deadline, "no checkpoint within the time limit"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
        proc.wait()
    killed_at = max(m["step"] for m in _metrics(run))
    assert killed_at >= 2

    resumed = _run(args + ["--resume"])
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed from" in resumed.stderr and "step_000002" in resumed.stderr or killed_at >= 3
    metrics = _metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3, 4], "steps after the last checkpoint are redone once, none lost or doubled"
    final = run / "checkpoints" / "step_000004"
    assert json.loads((final / "trainer_state.json").read_text())["step"] == 4

    for m in metrics:
        assert m["reward/mean"] > 0 and "reward/arithmetic/char_count" in m
        assert m["time/generate"] > 0 and m["time/train"] > 0 and m["perf/gen_tokens_per_s"] > 0
        assert m["actor/grad_norm"] > 0 and m["actor/lr"] == pytest.approx(1e-3)
        assert m["distill/reverse_kl"] != 0 and m["distill/teacher_logprob"] < 0
    rollouts = (run / "rollouts" / "step_000004.jsonl").read_text().splitlines()
    assert len(rollouts) == 8 and {"completion", "reward", "advantage"} <= set(json.loads(rollouts[0]))
    assert (run / "config.yaml").exists()

    trained = load_file(final / "model" / "model.safetensors")
    initial = load_file(tiny_model / "model.safetensors")
    changed = [k for k in initial if not (trained[k].float() == initial[k].float()).all()]
    assert len(changed) > len(initial) // 2, "GRPO steps must update most parameters"
    assert (final / "deepspeed").is_dir()

    # The console: the closing summary; the libraries' INFO lines (vLLM's, DeepSpeed's) only in console.log.
    assert "run finished: 4 steps" in resumed.stdout and f"checkpoint {final}" in resumed.stdout
    assert "reward " in resumed.stdout and (run / "report.png").is_file() and (run / "report.html").is_file()
    console = resumed.stdout + resumed.stderr
    assert " INFO " not in console.replace("INFO rl", "").replace("INFO rewards", ""), console[-3000:]
    assert "Failed to load weights" not in console
    log = (run / "console.log").read_text()
    assert "vllm" in log.lower() and "INFO" in log, "what the console hides is kept in the run folder"


def test_bad_config_fails_before_any_actor_starts(tiny_model, tmp_path):
    proc = _run(["train", "configs/tiny.yaml", *tiny_overrides(tiny_model, tmp_path / "r"), "--rollout.grop_size", "2"],
                timeout=60)
    assert proc.returncode == 2 and "unknown field 'rollout.grop_size'" in proc.stderr
    proc = _run(["train", "configs/tiny.yaml", *tiny_overrides(tmp_path / "missing-model", tmp_path / "r")], timeout=60)
    assert proc.returncode == 2 and "missing-model does not exist" in proc.stderr


def test_dataset_row_without_required_field_is_named(tiny_model, tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "1+1?", "answer": "2"}\n{"prompt": "2+2?"}\n')
    task = f"[{{name: mine, source: '{data}', eval_size: 0, rewards: [{{name: math}}]}}]"
    proc = _run(["train", "configs/tiny.yaml", *tiny_overrides(tiny_model, tmp_path / "r", **{"data.tasks": task})],
                timeout=60)
    assert proc.returncode == 2
    assert "rows.jsonl: line 2 of task 'mine' is missing field(s) ['answer']" in proc.stderr


def test_off_policy_gspo_lora_entropy_control_and_failing_rewards_in_one_run(tiny_model, tmp_path):
    """Off-policy rollouts, and in the same run the policy-loss options (the GSPO preset, LoRA, an
    entropy target and KL-Cov; truncation masking: tests/rl/test_learner_batching.py, since here every
    response of the random model is truncated, which would leave nothing to train) and a user reward
    that raises, hangs forever or returns garbage on some samples: the run completes and its metrics
    and rollouts count each failure."""
    run = tmp_path / "run"
    counter = tmp_path / "calls.txt"  # tests/data/flaky_rewards.py: call n misbehaves by n % 5
    tasks = ("[{name: arithmetic, size: 64, eval_size: 8, rewards: ["
             f"{{name: '{DATA / 'flaky_rewards.py'}:flaky', kwargs: {{counter: '{counter}'}}}}, "
             f"{{name: '{DATA / 'user_rewards.py'}:char_count', weight: 0.5}}]}}]")
    proc = _run(["train", "configs/tiny.yaml", "--algo", "gspo", *tiny_overrides(tiny_model, run, **{
        "run.steps": 3, "rollout.off_policy_steps": 1, "grpo.tis_cap": 2.0, "checkpoint.every": 0,
        "model.lora_rank": 8, "grpo.entropy_target": 0.5, "grpo.entropy_coef_lr": 0.001,
        "grpo.kl_cov_ratio": 0.1, "data.tasks": tasks, "reward.timeout_s": 3})])
    assert proc.returncode == 0, proc.stderr[-4000:]
    metrics = _metrics(run)
    assert [m["step"] for m in metrics] == [1, 2, 3]
    config = (run / "config.yaml").read_text()
    assert "importance_level: sequence" in config and "lora_rank: 8" in config
    # the entropy of a random model (~11 nats) is far above 0.5: the coefficient steps down each update
    coefs = [m["actor/entropy_coef"] for m in metrics]
    assert coefs[0] == 0.0 and coefs[1] < 0.0 and coefs[2] < coefs[1]
    assert all(0 < m["pg/kl_cov_frac"] <= 0.1 for m in metrics)
    final = run / "checkpoints" / "step_000003"
    assert (final / "adapter" / "adapter_config.json").is_file() and (final / "model" / "config.json").is_file()
    # the batch of step 2 is generated with the initial weights while the learner makes update 1, and
    # the batch of step 3 with update 1 while it makes update 2: one update behind, never more
    assert [m["rollout/staleness"] for m in metrics] == [0.0, 1.0, 1.0]
    assert all(0 < m["pg/tis_weight_mean"] <= 2.0 for m in metrics)  # the correction is applied, truncated
    _check_failing_rewards_counted(run, metrics, counter, samples=3 * 8)


def _check_failing_rewards_counted(run: Path, metrics: list[dict], counter: Path, samples: int) -> None:
    def total(key: str) -> float:
        return sum(m.get(key, 0.0) for m in metrics)

    kinds = Counter(counter.with_suffix(".log").read_text().split())
    assert sum(kinds.values()) == samples and kinds["hang"] >= 3 and kinds["raise"] >= 3
    assert total("reward_calls/arithmetic/flaky") == samples
    assert total("reward_errors/arithmetic/flaky") == kinds["raise"] + kinds["string"] + kinds["nan"]
    assert total("reward_timeouts/arithmetic/flaky") == kinds["hang"]
    assert total("reward_worker_restarts") == kinds["hang"]  # each hung process was killed and replaced
    # The healthy reward scored every sample, including those whose other reward failed.
    assert total("reward_calls/arithmetic/char_count") == samples
    assert total("reward_errors/arithmetic/char_count") == total("reward_timeouts/arithmetic/char_count") == 0

    rows = [json.loads(line) for step in range(1, len(metrics) + 1)
            for line in (run / "rollouts" / f"step_{step:06d}.jsonl").read_text().splitlines()]
    errors = Counter(row["errors"].get("flaky", "ok").split(":")[0] for row in rows)
    assert errors == {"ok": kinds["ok"], "timeout": kinds["hang"], "RuntimeError": kinds["raise"],
                      "TypeError": kinds["string"], "ValueError": kinds["nan"]}
    for row in rows:
        assert row["components"]["char_count"] is not None
        if "flaky" in row["errors"]:
            assert row["components"]["flaky"] is None
            assert row["reward"] == pytest.approx(0.5 * row["components"]["char_count"])
