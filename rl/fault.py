"""Fault tolerance for the driver: restart-and-retry for rollout and reward actors, and what a
learner failure means.

Rollout and reward actors are created with Ray's `max_restarts` (`cluster.max_actor_restarts`), so
when one dies (its process killed, OOM, a crashed engine) Ray starts it again in the same placement
group bundle. Ray does not replay the calls that were in flight (`max_task_retries` stays 0): a
restarted rollout worker holds the initial weights, so its work must wait for a weight re-sync.
`Restarts.run` does that: it sends one share of work per actor, and a share whose actor died is
re-sent to the restarted actor after `prepare` (the weight re-sync), counting the restart.

    restarts = Restarts(max_retries=cfg.cluster.max_actor_restarts)
    chunks = restarts.run("rollout", workers, chunks, lambda w, c: w.generate.remote(c),
                          prepare=resync, stale=lambda rollouts: ...)
    metrics.update(restarts.metrics())        # fault/rollout_restarts, fault/reward_restarts (run totals)

Learners are never restarted: their ranks form one torch.distributed world that a single new rank
cannot rejoin. A learner failure ends the run with the last checkpoint intact (checkpoints are
written to `step_N.tmp/` and renamed when complete, rl/checkpoint.py); `rl train --resume auto`
(what `rl submit` runs) continues from it, with the same data order (rl/data.py).
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rl import checkpoint

log = logging.getLogger("rl")

ROLES = ("rollout", "reward")
RESTART_TIMEOUT_S = float(os.environ.get("RL_RESTART_TIMEOUT_S", 600))
"""How long to wait for Ray to bring a dead actor back (a vLLM engine on a GPU can take minutes)."""


class WorkerLost(RuntimeError):
    """An actor kept dying (or stayed dead) after `max_retries` restarts."""


class Restarts:
    """Counts actor restarts per role (run totals, for metrics) and retries work on restarted actors."""

    def __init__(self, max_retries: int):
        self.max_retries = max_retries
        self.counts = dict.fromkeys(ROLES, 0)

    def metrics(self) -> dict[str, float]:
        return {f"fault/{role}_restarts": float(n) for role, n in self.counts.items()}

    def run(self, role: str, workers: list, shares: list[list], submit: Callable[[Any, list], Any], *,
            prepare: Callable[[Any], Any] | None = None, stale: Callable[[Any], bool] | None = None) -> list:
        """`submit(worker, share)` -> ObjectRef for every non-empty share (share i goes to worker i);
        returns the results of the non-empty shares, in order.

        A share whose actor died (RayActorError: ActorDiedError, ActorUnavailableError) is re-sent to
        the same actor handle, which Ray restarts, after `prepare(worker)`. `stale(result)` flags a
        result from an actor that restarted between calls (no error was seen, but it lost its state):
        it is treated the same way. Other errors (a bug in a reward, a bad request) propagate."""
        import ray
        from ray.exceptions import RayActorError

        pending = {submit(workers[i], share): i for i, share in enumerate(shares) if share}
        results: dict[int, Any] = {}
        failures = dict.fromkeys(range(len(workers)), 0)
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            i = pending.pop(ref)
            try:
                result = ray.get(ref)
                if stale is None or not stale(result):
                    results[i] = result
                    continue
                why = "restarted since its last call and lost its state"
            except RayActorError as exc:
                if not _is_death_of(exc, workers[i]):
                    raise
                why = f"died ({type(exc).__name__})"
            failures[i] += 1
            self.counts[role] += 1
            if failures[i] > self.max_retries:
                raise WorkerLost(
                    f"{role} worker {i} {why}, and it failed {failures[i]} times in this call, more than "
                    f"cluster.max_actor_restarts={self.max_retries}; the run stops. Check the worker's log "
                    "(ray logs / the dashboard) for why it dies; resubmit with --resume auto to continue")
            log.warning("%s worker %d %s; retrying its %d requests on the restarted actor (%s restarts so far)",
                        role, i, why, len(shares[i]), self.counts[role])
            self._recover(role, i, workers[i], prepare)
            pending[submit(workers[i], shares[i])] = i
        return [results[i] for i in sorted(results)]

    def _recover(self, role: str, i: int, worker: Any, prepare: Callable[[Any], Any] | None) -> None:
        """Wait until Ray has restarted `worker`, then `prepare` it. Calls to a restarting actor fail at
        once (ActorUnavailableError) rather than wait, so poll its built-in `__ray_ready__`. An actor
        that is dead for good (restarts used up, a constructor that fails) is left to the retried call,
        which reports it."""
        import ray
        from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError

        deadline = time.monotonic() + RESTART_TIMEOUT_S
        while True:
            try:
                ray.get(worker.__ray_ready__.remote(), timeout=max(deadline - time.monotonic(), 1.0))
                break
            except (ActorUnavailableError, GetTimeoutError) as exc:
                if time.monotonic() >= deadline:
                    raise WorkerLost(f"{role} worker {i} did not come back within {RESTART_TIMEOUT_S:.0f} s "
                                     "of dying (no free resources for it? set RL_RESTART_TIMEOUT_S to wait "
                                     "longer)") from exc
                time.sleep(0.5)
            except RayActorError:
                return
        if prepare is None:
            return
        try:
            prepare(worker)
        except RayActorError as exc:
            log.warning("%s worker %d died again while being prepared for a retry: %s", role, i, exc)

    def tolerate(self, role: str, workers: list, refs: list) -> list:
        """`ray.get` each worker's ref; a worker that died is counted and logged, and its result is None.
        For calls whose loss the next `run` repairs: a weight update to a rollout worker that then
        restarts with weights version 0, which `stale` catches."""
        import ray
        from ray.exceptions import RayActorError

        out = []
        for i, (worker, ref) in enumerate(zip(workers, refs)):
            try:
                out.append(ray.get(ref))
            except RayActorError as exc:
                if not _is_death_of(exc, worker):
                    raise
                self.counts[role] += 1
                log.warning("%s worker %d died during a weight update (%s); it restarts and is re-synced "
                            "before it generates again", role, i, type(exc).__name__)
                out.append(None)
        return out


def _is_death_of(exc: Any, worker: Any) -> bool:
    """True if `exc` reports the death of `worker` itself, not of an actor whose result it was given
    (a weight update fails with the learner's ActorDiedError when the learner died)."""
    return exc.actor_id is None or exc.actor_id == worker._actor_id.hex()  # Ray has no public accessor


@contextlib.contextmanager
def learner_guard(out_dir: Path, step: int, learners: list) -> Iterator[None]:
    """Turn the death of a learner rank inside the block into `learner_failed`'s error; other errors
    (including other actors' deaths) pass through unchanged."""
    from ray.exceptions import RayActorError

    try:
        yield
    except RayActorError as exc:
        if any(_is_death_of(exc, learner) for learner in learners) and exc.actor_id is not None:
            raise learner_failed(out_dir, step, exc) from exc
        raise


def learner_failed(out_dir: Path, step: int, exc: BaseException) -> RuntimeError:
    """The error that ends a run whose learner died: what happened and how to continue."""
    latest = checkpoint.latest_checkpoint(out_dir)
    where = (f"the last complete checkpoint is {latest[0]} (step {latest[1]['step']})" if latest
             else "there is no complete checkpoint yet, so a resumed run starts from step 0")
    return RuntimeError(
        f"a learner rank died during step {step + 1} ({type(exc).__name__}); learners are not restarted "
        f"(their DeepSpeed world cannot take in a new rank), so the run stops here. {where}. Continue with "
        f"`rl train ... --resume auto` or resubmit the job (rl submit resumes by default). Cause: {exc}")
