"""Score completions with a task's rewards, in killable worker processes, without ever stalling.

    runner = RewardRunner({"gsm8k": [RewardSpec("math"), RewardSpec("format", weight=0.2)]},
                          timeout_s=10.0, num_procs=2)
    results = runner.score([ScoreRequest(completion, {"task": "gsm8k", "answer": "42"})])
    results[0].reward, results[0].components, runner.stats()     # -> 1.2, {...}, {"reward_calls/...": 1, ...}
    runner.close()

Every (sample, reward) call runs in one of `num_procs` persistent worker processes (spawn context,
each the leader of its own process group). The parent sends (job, completion, row) down a pipe and
waits with a deadline: a call that runs past `timeout_s` gets its process group SIGKILLed and a fresh
worker started, and that component becomes None with error "timeout". A worker that dies (segfault,
`os._exit`) gives "worker died" and is replaced. A reward that raises or returns garbage (NaN, a
string; `rewards.base.as_result`) gives None with "ExcType: message"; the first traceback of each
(task, reward) is logged at WARNING on the "rewards" logger, later ones are only counted (`stats()`).

The timeout is per reward call: a sample with k rewards may take up to k * timeout_s in total, but
one hung component never costs the sample its other components. Model-based rewards (judge, reward
model) get `model_timeout_s` instead: they wait for a shared model that batches every caller's
requests, which takes seconds per call on a CPU. A `RewardSpec.timeout_s` overrides both. Workers
resolve the rewards themselves from the (picklable) specs, so no function object crosses a process
boundary.

Agreement metric (a reward-hacking signal): when a task has a rule-based and a model-based reward
(`RewardSpec.model_based`, or by default a name containing "judge" or "reward_model"), the first of
each kind are binarised at 0.5 (score >= 0.5 counts as a pass) on every sample where both scored, and
`reward_agreement/<task>` is the fraction of those samples where they agree. It assumes both rewards
live in [0, 1]; normalise a raw reward-model logit before using it.
"""
from __future__ import annotations

import atexit
import logging
import multiprocessing
import multiprocessing.connection
import multiprocessing.util  # imported before our atexit hook, so our hook runs first (LIFO)
import os
import signal
import threading
import time
import traceback
import weakref
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from rewards.base import call_reward
from rewards.registry import get_reward
from rewards.spec import RewardSpec, ScoreRequest, ScoreResult

logger = logging.getLogger("rewards")

START_TIMEOUT_S = 120.0
"""How long a fresh worker may take to import and resolve the rewards before we call it broken."""
MOSTLY_BAD = 0.5
"""Warn when more than this fraction of a batch is None or failed for one (task, reward)."""
@dataclass
class _Job:
    id: int
    task: str
    index: int
    """Position of the reward in specs[task]."""
    completion: str
    row: dict[str, Any]


@dataclass
class _Outcome:
    score: float | None
    details: dict[str, Any]
    error: str | None = None
    traceback: str | None = None
    """Full traceback text from the worker, or a sentence for timeouts and deaths."""


# ---------------------------------------------------------------------------------------------
# Worker process side


def _worker_main(conn: multiprocessing.connection.Connection, specs: dict[str, list[RewardSpec]],
                 parent_pid: int) -> None:
    """Resolve the rewards once, then answer jobs until the parent sends None or goes away."""
    os.setpgrp()  # own process group: a timeout kills the reward's subprocesses with it
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    try:
        fns = {(task, i): get_reward(spec.name, **spec.kwargs)
               for task, task_specs in specs.items() for i, spec in enumerate(task_specs)}
    except Exception:
        conn.send(("init_error", traceback.format_exc()))
        return
    conn.send(("ready",))
    while True:
        try:
            job = conn.recv()
        except EOFError:  # the parent closed its end
            return
        if job is None:
            return
        name = specs[job.task][job.index].key
        conn.send(("result", job.id, _call(fns[job.task, job.index], name, job.completion, job.row)))


def _call(fn: Any, name: str, completion: str, row: dict[str, Any]) -> _Outcome:
    try:
        result = call_reward(fn, name, completion, row)
        return _Outcome(result.score, result.details)
    except (Exception, SystemExit) as exc:  # SystemExit: a reward calling sys.exit() is a reward bug
        return _Outcome(None, {}, f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _exit_with_parent(parent_pid: int) -> None:
    """Kill this worker's process group when the parent dies, so a hung reward is not orphaned."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.killpg(0, signal.SIGKILL)


# ---------------------------------------------------------------------------------------------
# Parent side


class _Proc:
    """One worker process, its pipe end, the job it is running and when to give up on it."""

    def __init__(self, ctx: Any, specs: dict[str, list[RewardSpec]]) -> None:
        self.conn, child_conn = ctx.Pipe()
        self.process = ctx.Process(target=_worker_main, args=(child_conn, specs, os.getpid()),
                                   name="reward-worker")
        self.process.start()
        child_conn.close()  # keep only the child's copy, so its death reads as EOF here
        self.ready = False
        self.job: _Job | None = None
        self.deadline = time.monotonic() + START_TIMEOUT_S

    @property
    def waiting(self) -> bool:
        """Starting up or running a job: something to wait for."""
        return self.job is not None or not self.ready

    def kill(self) -> None:
        """SIGKILL the whole process group (the worker and any subprocess its reward started)."""
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:  # it died before (or while) making its group: kill just it
            self.process.kill()
        self.process.join(5.0)
        self.conn.close()

    def stop(self) -> None:
        if self.process.is_alive() and self.ready and self.job is None:
            try:
                self.conn.send(None)
                self.process.join(1.0)
            except OSError:
                pass  # already gone; kill() below cleans up either way
        self.kill()


_LIVE_RUNNERS: weakref.WeakSet[RewardRunner] = weakref.WeakSet()


@atexit.register
def _close_live_runners() -> None:
    # Workers are not daemonic (daemonic processes may not start children, which a code sandbox
    # reward needs), so multiprocessing would join them at exit; stop them first.
    for runner in list(_LIVE_RUNNERS):
        runner.close()


class RewardRunner:
    """Scores batches with each task's weighted rewards; see the module docstring."""

    def __init__(self, specs: dict[str, list[RewardSpec]], timeout_s: float = 10.0, num_procs: int = 1,
                 model_timeout_s: float | None = None):
        model_timeout_s = timeout_s if model_timeout_s is None else model_timeout_s
        if timeout_s <= 0 or model_timeout_s <= 0 or num_procs < 1:
            raise ValueError(f"need timeout_s > 0, model_timeout_s > 0 and num_procs >= 1, got {timeout_s}, "
                             f"{model_timeout_s} and {num_procs}")
        self.specs = {task: list(task_specs) for task, task_specs in specs.items()}
        self.timeout_s = timeout_s
        self.model_timeout_s = model_timeout_s
        self._validate_and_resolve()
        self._ctx = multiprocessing.get_context("spawn")
        self._procs = [_Proc(self._ctx, self.specs) for _ in range(num_procs)]
        self._counts: Counter[str] = Counter()
        self._agree: Counter[str] = Counter()
        self._logged: set[tuple[str, str, str]] = set()
        self._closed = False
        _LIVE_RUNNERS.add(self)

    def _validate_and_resolve(self) -> None:
        """Resolve every reward here once: a bad name fails now, not in a worker."""
        for task, task_specs in self.specs.items():
            if not task_specs:
                raise ValueError(f"task {task!r} has no rewards; list at least one under its `rewards`")
            keys = [spec.key for spec in task_specs]
            duplicates = sorted({k for k in keys if keys.count(k) > 1})
            if duplicates:
                raise ValueError(f"task {task!r} has more than one reward named {duplicates}; "
                                 "give each an `alias` so their components and metrics stay apart")
            for spec in task_specs:
                get_reward(spec.name, **spec.kwargs)

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        """Score every request; never raises for a reward's failure (see `ScoreResult.errors`)."""
        if self._closed:
            raise RuntimeError("RewardRunner.score called after close()")
        jobs = self._make_jobs(requests)
        started = time.monotonic()
        outcomes = self._run(jobs)
        self._counts["time/reward_score_s"] += time.monotonic() - started
        return self._assemble(requests, jobs, outcomes)

    def _make_jobs(self, requests: list[ScoreRequest]) -> list[_Job]:
        jobs = []
        for request in requests:
            task = request.row.get("task")
            if task not in self.specs:
                raise ValueError(f"no rewards configured for task {task!r} (row['task']); "
                                 f"known tasks: {sorted(self.specs)}")
            for i in range(len(self.specs[task])):  # each reward takes the answer or the raw completion
                jobs.append(_Job(len(jobs), task, i, request.completion, request.row))
        return jobs

    # -- the scheduling loop --------------------------------------------------------------------

    def _run(self, jobs: list[_Job]) -> dict[int, _Outcome]:
        pending, outcomes = deque(jobs), {}
        while pending or any(proc.job is not None for proc in self._procs):
            for slot, proc in enumerate(self._procs):
                if proc.ready and proc.job is None and pending:
                    self._dispatch(slot, pending)
            self._collect(outcomes)
            self._enforce_deadlines(outcomes)
        return outcomes

    def _dispatch(self, slot: int, pending: deque[_Job]) -> None:
        proc, job = self._procs[slot], pending.popleft()
        try:
            if not proc.process.is_alive():
                raise BrokenPipeError("worker exited while idle")
            proc.conn.send(job)
        except OSError:  # it died between jobs (not this job's fault): replace it, retry the job
            pending.appendleft(job)
            self._replace(slot)
            return
        proc.job, proc.deadline = job, time.monotonic() + self.time_limit(job.task, job.index)

    def time_limit(self, task: str, index: int) -> float:
        """Seconds one call of reward `index` of `task` may take: its spec's own `timeout_s`, else the
        runner's limit for its kind (rule-based or model-based)."""
        spec = self.specs[task][index]
        if spec.timeout_s is not None:
            return spec.timeout_s
        return self.model_timeout_s if spec.is_model_based else self.timeout_s

    def _collect(self, outcomes: dict[int, _Outcome]) -> None:
        """Wait until a waiting worker replies, dies or reaches its deadline; handle what arrived."""
        waiting = [proc for proc in self._procs if proc.waiting]
        if not waiting:
            return
        timeout = max(0.0, min(proc.deadline for proc in waiting) - time.monotonic())
        handles = [proc.conn for proc in waiting] + [proc.process.sentinel for proc in waiting]
        ready = set(multiprocessing.connection.wait(handles, timeout))
        for proc in waiting:
            if proc.conn in ready or proc.process.sentinel in ready:
                self._receive(self._procs.index(proc), outcomes)

    def _receive(self, slot: int, outcomes: dict[int, _Outcome]) -> None:
        proc = self._procs[slot]
        try:
            message = proc.conn.recv() if proc.conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is None:  # no reply, and the sentinel or EOF says the process is gone
            self._on_death(slot, outcomes)
        elif message[0] == "ready":
            proc.ready = True
        elif message[0] == "init_error":
            raise RuntimeError(f"a reward worker failed to resolve its rewards:\n{message[1]}")
        else:
            _, job_id, outcome = message
            outcomes[job_id] = outcome
            proc.job = None

    def _on_death(self, slot: int, outcomes: dict[int, _Outcome]) -> None:
        proc = self._procs[slot]
        proc.process.join(1.0)
        code = proc.process.exitcode
        if proc.job is None:
            raise RuntimeError(f"a reward worker died while starting (exit code {code}); "
                               "run one of the task's rewards by hand to see why")
        outcomes[proc.job.id] = _Outcome(None, {}, "worker died",
                                         f"the worker process exited with code {code} during the call")
        self._replace(slot)

    def _enforce_deadlines(self, outcomes: dict[int, _Outcome]) -> None:
        now = time.monotonic()
        for slot, proc in enumerate(self._procs):
            if not proc.waiting or proc.deadline > now or proc.conn.poll():
                continue  # a reply that is already waiting in the pipe made it in time
            if proc.job is None:
                proc.kill()
                raise RuntimeError(f"a reward worker did not start within {START_TIMEOUT_S:.0f} s "
                                   "(importing / resolving the rewards hangs?)")
            limit = self.time_limit(proc.job.task, proc.job.index)
            outcomes[proc.job.id] = _Outcome(None, {}, "timeout", f"no result after {limit} s; the process was killed")
            self._replace(slot)

    def _replace(self, slot: int) -> None:
        self._procs[slot].kill()
        self._procs[slot] = _Proc(self._ctx, self.specs)
        self._counts["reward_worker_restarts"] += 1

    # -- results and metrics --------------------------------------------------------------------

    def _assemble(self, requests: list[ScoreRequest], jobs: list[_Job],
                  outcomes: dict[int, _Outcome]) -> list[ScoreResult]:
        results, batch = [], Counter()
        job_iter = iter(jobs)
        for request in requests:
            task = request.row["task"]
            result = ScoreResult(0.0, {}, {}, True, {})
            for spec in self.specs[task]:
                outcome = outcomes[next(job_iter).id]
                self._record(task, spec.key, outcome, batch)
                result.components[spec.key] = outcome.score
                if outcome.error is not None:
                    result.errors[spec.key] = outcome.error
                if outcome.details:
                    result.details[spec.key] = outcome.details
                if outcome.score is not None:
                    result.reward += spec.weight * outcome.score
                    result.all_none = False
            self._record_agreement(task, result)
            results.append(result)
        self._warn_mostly_bad(batch)
        return results

    def _record(self, task: str, name: str, outcome: _Outcome, batch: Counter) -> None:
        kind = ("timeouts" if outcome.error == "timeout" else "errors" if outcome.error is not None
                else "none" if outcome.score is None else "ok")
        for counter in (self._counts, batch):
            counter[f"reward_calls/{task}/{name}"] += 1
            if kind != "ok":
                counter[f"reward_{kind}/{task}/{name}"] += 1
        # One log line per (task, reward, failure kind): a reward bug is loud once, not every step.
        failure = outcome.error if outcome.error in ("timeout", "worker died") else "exception"
        if outcome.error is not None and (task, name, failure) not in self._logged:
            self._logged.add((task, name, failure))
            logger.warning("reward %r of task %r failed: %s. Only this first one is logged; later ones "
                           "are counted in reward_%s/%s/%s.\n%s", name, task, outcome.error, kind, task,
                           name, outcome.traceback)

    def _record_agreement(self, task: str, result: ScoreResult) -> None:
        specs = self.specs[task]
        rule = next((s.key for s in specs if not s.is_model_based), None)
        model = next((s.key for s in specs if s.is_model_based), None)
        if rule is None or model is None:
            return
        rule_score, model_score = result.components[rule], result.components[model]
        if rule_score is None or model_score is None:
            return
        self._agree[f"n/{task}"] += 1
        self._agree[f"agree/{task}"] += (rule_score >= 0.5) == (model_score >= 0.5)

    def _warn_mostly_bad(self, batch: Counter) -> None:
        for key, calls in batch.items():
            if not key.startswith("reward_calls/"):
                continue
            suffix = key.removeprefix("reward_calls/")
            bad = {kind: batch[f"reward_{kind}/{suffix}"] for kind in ("none", "errors", "timeouts")}
            if sum(bad.values()) > MOSTLY_BAD * calls:
                logger.warning("reward %s: %d of %d samples in this batch gave no score (%d None, %d errors, "
                               "%d timeouts); training gets no signal from it on those samples",
                               suffix, sum(bad.values()), calls, bad["none"], bad["errors"], bad["timeouts"])

    def stats(self, reset: bool = True) -> dict[str, float]:
        """Counters since the last reset: reward_calls|none|errors|timeouts/<task>/<name>,
        reward_agreement/<task> (+ reward_agreement_count/<task>), reward_worker_restarts,
        time/reward_score_s."""
        out = {key: float(value) for key, value in self._counts.items()}
        for key, n in self._agree.items():
            if key.startswith("n/"):
                task = key.removeprefix("n/")
                out[f"reward_agreement/{task}"] = self._agree[f"agree/{task}"] / n
                out[f"reward_agreement_count/{task}"] = float(n)
        if reset:
            self._counts.clear()
            self._agree.clear()
        return out

    def close(self) -> None:
        """Stop the worker processes (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for proc in self._procs:
            proc.stop()
        _LIVE_RUNNERS.discard(self)

    def __enter__(self) -> RewardRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
