"""rl/fault.py on a local Ray: dead actors are restarted and their work retried (after `prepare`), stale
restarted actors are caught, retries are bounded, and a dead learner ends the run naming its checkpoint."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from rl.fault import Restarts, WorkerLost, learner_failed, learner_guard

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray


class Flaky:
    """Doubles numbers. Its process dies on `work` while fewer than `deaths` marker files exist (one
    is written per death), so the n-th life of the actor behaves differently from the first."""

    def __init__(self, marker_dir: str, deaths: int):
        self.marker_dir, self.deaths, self.version = Path(marker_dir), deaths, 0

    def work(self, xs: list[int]) -> dict:
        died = len(list(self.marker_dir.iterdir()))
        if died < self.deaths:
            (self.marker_dir / f"death{died}").touch()
            os._exit(1)  # like a SIGKILL: no exception, the process is gone
        return {"out": [2 * x for x in xs], "version": self.version}

    def set_version(self, version: int) -> int:
        self.version = version
        return version

    def exit(self) -> None:
        os._exit(1)

    def fail(self, xs: list[int]) -> None:
        raise ValueError("a bug in the work itself")

    def take(self, value: object) -> object:
        return value


@pytest.fixture(scope="module")
def local_ray():
    # Workers unpickle `Flaky` by its module name (this file, imported from tests/): they need it on their path.
    path = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])  # actors import this module
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": path}})
    yield
    ray.shutdown()


def flaky(tmp_path: Path, name: str, deaths: int, max_restarts: int = 3):
    marker = tmp_path / name
    marker.mkdir()
    return ray.remote(Flaky).options(num_cpus=0.1, max_restarts=max_restarts).remote(str(marker), deaths)


def test_dead_worker_is_restarted_prepared_and_its_share_retried(local_ray, tmp_path):
    workers = [flaky(tmp_path, "a", deaths=0), flaky(tmp_path, "b", deaths=1)]
    prepared = []
    restarts = Restarts(max_retries=3)
    out = restarts.run("rollout", workers, [[1, 2], [3]], lambda w, xs: w.work.remote(xs),
                       prepare=lambda w: prepared.append(ray.get(w.set_version.remote(7))))
    assert [o["out"] for o in out] == [[2, 4], [6]]
    assert [o["version"] for o in out] == [0, 7], "the retry ran on the restarted, re-prepared actor"
    assert prepared == [7] and restarts.metrics() == {"fault/rollout_restarts": 1.0, "fault/reward_restarts": 0.0}


def test_empty_shares_are_skipped_and_results_keep_their_order(local_ray, tmp_path):
    workers = [flaky(tmp_path, "a", deaths=0), flaky(tmp_path, "b", deaths=0), flaky(tmp_path, "c", deaths=0)]
    out = Restarts(max_retries=0).run("reward", workers, [[1], [2], []], lambda w, xs: w.work.remote(xs))
    assert [o["out"] for o in out] == [[2], [4]]


def test_actor_restarted_between_calls_is_caught_as_stale(local_ray, tmp_path):
    [worker] = [flaky(tmp_path, "a", deaths=0)]
    ray.get(worker.set_version.remote(5))
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(worker.exit.remote())  # dies while idle: the next call meets a fresh actor, no error
    restarts = Restarts(max_retries=2)
    [out] = restarts.run("rollout", [worker], [[4]], lambda w, xs: w.work.remote(xs),
                         prepare=lambda w: ray.get(w.set_version.remote(5)), stale=lambda o: o["version"] == 0)
    assert out == {"out": [8], "version": 5} and restarts.counts["rollout"] == 1


def test_retries_are_bounded(local_ray, tmp_path):
    worker = flaky(tmp_path, "a", deaths=10, max_restarts=10)
    restarts = Restarts(max_retries=1)
    with pytest.raises(WorkerLost, match=r"reward worker 0 died .*cluster.max_actor_restarts=1"):
        restarts.run("reward", [worker], [[1]], lambda w, xs: w.work.remote(xs))
    assert restarts.counts["reward"] == 2


def test_errors_that_are_not_deaths_propagate_uncounted(local_ray, tmp_path):
    worker = flaky(tmp_path, "a", deaths=0)
    restarts = Restarts(max_retries=3)
    with pytest.raises(ValueError, match="a bug in the work itself"):
        restarts.run("reward", [worker], [[1]], lambda w, xs: w.fail.remote(xs))
    assert restarts.counts == {"rollout": 0, "reward": 0}


def test_tolerate_counts_the_workers_own_death_but_not_an_upstream_one(local_ray, tmp_path):
    source, worker, victim = (flaky(tmp_path, n, deaths=0, max_restarts=0) for n in "abc")
    restarts = Restarts(max_retries=3)
    assert restarts.tolerate("rollout", [worker, victim], [worker.take.remote(1), victim.exit.remote()]) == [1, None]
    assert restarts.counts["rollout"] == 1
    dead_value = source.exit.remote()  # e.g. weights from a learner that died
    with pytest.raises(ray.exceptions.RayActorError):
        restarts.tolerate("rollout", [worker], [worker.take.remote(dead_value)])
    assert restarts.counts["rollout"] == 1


def _checkpoint(run: Path, step: int, tmp: bool = False) -> None:
    path = run / "checkpoints" / f"step_{step:06d}{'.tmp' if tmp else ''}"
    path.mkdir(parents=True)
    if not tmp:
        (path / "trainer_state.json").write_text(json.dumps({"step": step}))


def test_learner_death_ends_the_run_naming_the_last_complete_checkpoint(local_ray, tmp_path):
    _checkpoint(tmp_path, 2)
    _checkpoint(tmp_path, 3, tmp=True)  # a save the death interrupted
    learner, other = flaky(tmp_path, "l", deaths=0, max_restarts=0), flaky(tmp_path, "o", deaths=0, max_restarts=0)
    with pytest.raises(RuntimeError, match=r"learner rank died during step 4.*step_000002 \(step 2\).*--resume auto"):
        with learner_guard(tmp_path, 3, [learner]):
            ray.get(learner.exit.remote())
    with pytest.raises(ray.exceptions.RayActorError):  # not a learner: passes through unchanged
        with learner_guard(tmp_path, 3, [learner]):
            ray.get(other.exit.remote())


def test_learner_failure_without_checkpoint_says_resume_starts_over(tmp_path):
    message = str(learner_failed(tmp_path, 0, RuntimeError("boom")))
    assert "no complete checkpoint yet" in message and "step 1" in message and "boom" in message
