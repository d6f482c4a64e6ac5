"""`rl submit` on a real two-node Ray cluster on this machine (tests/local_cluster.py): placement by
custom resource, a ZeRO-3 learner world over both nodes, a rollout worker killed mid-run, and a stopped job
resubmitted with `--resume auto` continuing at the right step with the same data order.

Three jobs in all (each pays ~30-60 s of actor start-up on a small machine): the first one covers
placement and the rollout-worker kill, the other two the stop and the resume.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.helpers import TESTS, tiny_overrides
from tests.data.cluster_rewards import prompt_fingerprint
from tests.local_cluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.ray]
ROOT = TESTS.parent
RL = [sys.executable, "-m", "rl.cli"]
HEAD, NODE = 0, 1  # LocalCluster node indices


@pytest.fixture(scope="module")
def cluster():
    """Head (3 CPUs) + a second node tagged {"rollout_node": 1} (2 CPUs), token auth, 127.0.0.1 only."""
    cluster = LocalCluster(num_cpus=3)
    try:
        cluster.add_node(num_cpus=2, resources={"rollout_node": 1})
        yield cluster
    finally:
        cluster.stop()
        assert not cluster.processes(), "the test cluster left processes behind"


def rl(cluster: LocalCluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(RL + list(args), cwd=ROOT, env=cluster.client_env(), capture_output=True, text=True,
                          timeout=timeout)


def submit_cmd(cluster: LocalCluster, overrides: list[str], *flags: str) -> list[str]:
    return RL + ["submit", "configs/tiny.yaml", "--address", cluster.dashboard_url, *flags, *overrides]


def metrics(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout: float = 500) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc is None or proc.poll() is None, f"rl submit ended before {what}: {proc.communicate()}"
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


# ---------------------------------------------------------------------------------- placement + kill
@pytest.fixture(scope="module")
def placed_run(cluster, tiny_model, tmp_path_factory):
    """2 steps: rollout worker pinned to the tagged node, two learner ranks spread over both nodes as one
    ZeRO-3 world (gloo; weights gathered collectively for the sync and the HF checkpoint); the
    rollout worker's process is SIGKILLed in the middle of step 2's generation (Ray titles the process
    `ray::RolloutWorker.generate` while the call runs). Records where the actors ran."""
    run = tmp_path_factory.mktemp("placed") / "run"
    overrides = tiny_overrides(tiny_model, run, **{
        "rollout.resources": "{rollout_node: 1}", "learner.num_workers": 2, "learner.zero_stage": 3,
        "cluster.placement_strategy": "SPREAD",
        "rollout.max_new_tokens": 32,  # a longer generate call: a wider window to kill the worker in
        "checkpoint.every": 0, "logging.wandb_mode": "disabled"})
    proc = subprocess.Popen(submit_cmd(cluster, overrides, "--wait"), cwd=ROOT, env=cluster.client_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen: dict[str, set[tuple[int, int]]] = {"RolloutWorker": set(), "Learner": set()}  # (node, pid)
    killed = None
    try:
        while proc.poll() is None:
            if killed is None and metrics(run):
                busy = cluster.actor_processes("RolloutWorker.generate")
                assert len(busy) <= 1, f"expected one rollout worker process, found {busy}"
                if busy:
                    killed = busy[0].pid
                    os.kill(killed, signal.SIGKILL)
            for name in seen:
                for node in (HEAD, NODE):
                    seen[name] |= {(node, p.pid) for p in cluster.actor_processes(name, node)}
            time.sleep(0.05)
        stdout, stderr = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
    return {"run": run, "model": tiny_model, "rc": proc.returncode, "stdout": stdout, "stderr": stderr, "seen": seen, "killed": killed}


def test_submitted_job_places_roles_by_resources_and_succeeds(placed_run):
    r = placed_run
    assert r["rc"] == 0, r["stderr"][-5000:]
    job_id = r["stdout"].splitlines()[0]
    assert job_id.startswith("raysubmit_") and f"job {job_id}: SUCCEEDED" in r["stderr"]
    assert [m["step"] for m in metrics(r["run"])] == [1, 2]
    rollout_nodes = {node for node, _ in r["seen"]["RolloutWorker"]}
    assert rollout_nodes == {NODE}, "rollout.resources={rollout_node: 1} pins the worker to the tagged node"
    learner_nodes = {node for node, _ in r["seen"]["Learner"]}
    assert learner_nodes == {HEAD, NODE}, "SPREAD places the two DeepSpeed ranks on both nodes, one world"
    trained = load_file(r["run"] / "checkpoints" / "step_000002" / "model" / "model.safetensors")
    initial = load_file(r["model"] / "model.safetensors")
    assert set(trained) >= set(initial) - {"lm_head.weight"}, "ZeRO-3 ranks gathered every weight for the save"
    assert any(not (trained[k] == initial[k]).all() for k in initial if k in trained), "and trained them"


def test_killed_rollout_worker_is_restarted_and_the_run_finishes(placed_run):
    r = placed_run
    assert r["rc"] == 0 and r["killed"] is not None, r["stderr"][-5000:]
    by_step = {m["step"]: m for m in metrics(r["run"])}
    assert by_step[1]["fault/rollout_restarts"] == 0 and by_step[1]["fault/reward_restarts"] == 0
    assert by_step[2]["fault/rollout_restarts"] >= 1, "the restart is recorded in the metrics"
    step2 = [json.loads(line) for line in (r["run"] / "rollouts" / "step_000002.jsonl").read_text().splitlines()]
    assert {row["weights_version"] for row in step2} == {1}, "the restarted worker got step 1's weights first"
    new_pids = {pid for node, pid in r["seen"]["RolloutWorker"] if pid != r["killed"]}
    assert new_pids, "Ray started a new rollout worker process"
    assert all(node == NODE for node, _ in r["seen"]["RolloutWorker"]), "and it stayed on the tagged node"
    assert re.search(r"rollout worker 0 died .*retrying its 8 requests", r["stdout"]), "retried, and said so"


# ------------------------------------------------------------------------------------- stop + resume
def expected_fingerprints(overrides: list[str], steps: int) -> list[list[float]]:
    """Prompt fingerprints of every sample of steps 1..steps in an uninterrupted run (the TaskMix draws)."""
    from envs.tasks import load_task
    from rl.config import load_config
    from rl.data import TaskMix

    cfg = load_config(ROOT / "configs" / "tiny.yaml", overrides)
    mix = TaskMix([load_task(t, cfg.run.seed) for t in cfg.data.tasks], cfg.run.seed)
    return [[prompt_fingerprint("", **d.row) for d in mix.sample(s, cfg.rollout.prompts_per_step)
             for _ in range(cfg.rollout.group_size)] for s in range(steps)]


def rollout_fingerprints(run: Path, step: int) -> list[float]:
    lines = (run / "rollouts" / f"step_{step:06d}.jsonl").read_text().splitlines()
    return [json.loads(line)["components"]["prompt_fingerprint"] for line in lines]


def test_stopped_job_resubmitted_resumes_at_the_right_step_with_the_same_data(cluster, tiny_model, tmp_path):
    run = tmp_path / "run"
    # 3 train rows, 2 prompts per step: an epoch ends inside step 2, so the resumed steps cross it.
    tasks = ("[{name: arithmetic, size: 3, eval_size: 2, rewards: ["
             f"{{name: '{TESTS / 'data' / 'user_rewards.py'}:char_count'}}, "
             f"{{name: '{TESTS / 'data' / 'cluster_rewards.py'}:prompt_fingerprint', weight: 0}}]}}]")
    overrides = tiny_overrides(tiny_model, run, **{"run.steps": 3, "data.tasks": tasks, "rollout.backend": "hf",
                                                   "logging.wandb_mode": "disabled"})
    first = subprocess.Popen(submit_cmd(cluster, overrides), cwd=ROOT, env=cluster.client_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    job_id = first.stdout.readline().strip()
    assert first.wait(timeout=120) == 0 and job_id.startswith("raysubmit_"), first.stderr.read()
    wait_for(lambda: (run / "checkpoints" / "step_000001").is_dir(), "the first checkpoint")
    stop = rl(cluster, "jobs", "stop", job_id, "--address", cluster.dashboard_url)
    assert stop.returncode == 0 and "stop requested" in stop.stdout, stop.stderr
    wait_for(lambda: "STOPPED" in rl(cluster, "jobs", "status", job_id, "--address", cluster.dashboard_url).stdout,
             "the job to stop", timeout=60)
    assert max(m["step"] for m in metrics(run)) < 3, "the job was stopped mid-run"
    resume_step = max(int(p.name.split("_")[1]) for p in (run / "checkpoints").glob("step_??????"))
    assert resume_step == 1, "stopped during step 2 (a step takes seconds; the stop is sent at once)"

    resubmitted_at = time.time()
    resumed = subprocess.run(submit_cmd(cluster, overrides, "--wait"), cwd=ROOT, env=cluster.client_env(),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-5000:]
    assert f"resumed from {run}/checkpoints/step_{resume_step:06d} at step {resume_step}" in resumed.stdout
    assert [m["step"] for m in metrics(run)] == [1, 2, 3], "no step lost or repeated in metrics.jsonl"

    expected = expected_fingerprints(overrides, 3)
    assert len({f for step in expected for f in step}) == 3, "all 3 rows drawn, 6 draws: two epochs"
    for step in range(1, 4):
        assert rollout_fingerprints(run, step) == expected[step - 1], f"step {step} trained on other prompts"
        written = (run / "rollouts" / f"step_{step:06d}.jsonl").stat().st_mtime
        assert (written > resubmitted_at) == (step > resume_step), f"step {step} written by the wrong job"
