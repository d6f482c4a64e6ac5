"""Rollouts ahead of the learner: one background thread generates and scores each step's batch as
soon as weights recent enough for it are out, so generation overlaps training.

    ahead = RolloutsAhead(produce, load, first_step=0, last_step=N, staleness=1, weights=PublishedWeights(0))
    for step in range(N):
        batch = ahead.take(step)                   # waits for step `step`'s batch
        ... train on it ...
        ahead.publish(PublishedWeights(step + 1, buckets))  # the learner's new weights (object refs)
    ahead.close()

The batch of step s may be generated with any weights version >= s - staleness (version v = after v
updates):
- staleness 0 is synchronous, on-policy GRPO: batch s waits for the update made on batch s-1;
- staleness 1 is one-step-off-policy (verl's "one step off", OpenRLHF's async mode): batch s+1
  is generated with version s while the learner makes update s+1 on batch s. Its samples are one
  update old; `grpo.tis_cap` corrects for it (truncated importance sampling, rl/grpo.py).

Before generating, the thread loads the newest published weights into the rollout workers if they
hold older ones. Only the driver's thread calls the learners (ZeRO-3 gathers are collective, so two
threads submitting to the ranks could order them differently on different ranks); this thread only
reads the weight objects the driver published.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rl.weight_sync import PublishedWeights


class RolloutsAhead:
    """`produce(step, weights)` makes step `step`'s batch with the rollout workers holding `weights`;
    `load(weights)` puts `weights` into every rollout worker and returns the seconds it took."""

    def __init__(self, produce: Callable[[int, PublishedWeights], Any], load: Callable[[PublishedWeights], float],
                 first_step: int, last_step: int, staleness: int, weights: PublishedWeights):
        if staleness < 0:
            raise ValueError(f"staleness must be >= 0, got {staleness}")
        self._produce, self._load, self.staleness = produce, load, staleness
        self._published = self._loaded = weights
        self._ready: dict[int, Any] = {}
        self._error: BaseException | None = None
        self._closed = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, args=(first_step, last_step), daemon=True,
                                        name="rollouts-ahead")
        self._thread.start()

    def _run(self, first_step: int, last_step: int) -> None:
        try:
            for step in range(first_step, last_step):
                with self._cond:
                    self._cond.wait_for(lambda: self._closed or self._published.version >= step - self.staleness)
                    if self._closed:
                        return
                    newest = self._published
                t_sync = 0.0
                if newest.version > self._loaded.version:
                    self._loaded = newest
                    t_sync = self._load(newest)
                batch = self._produce(step, self._loaded)
                batch.t_sync, batch.weights_version = t_sync, self._loaded.version
                with self._cond:
                    self._ready[step] = batch
                    self._cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - handed to the driver's thread, which raises it
            with self._cond:
                self._error = exc
                self._cond.notify_all()

    def take(self, step: int) -> Any:
        """Step `step`'s batch once it is ready (its `t_wait`: how long this call waited); re-raises whatever
        made the background thread fail."""
        t0 = time.perf_counter()
        with self._cond:
            self._cond.wait_for(lambda: step in self._ready or self._error is not None)
            if step not in self._ready:
                raise self._error  # type: ignore[misc]
            batch = self._ready.pop(step)
        batch.t_wait = time.perf_counter() - t0
        return batch

    def publish(self, weights: PublishedWeights) -> None:
        """The learner's weights after `weights.version` updates are available."""
        with self._cond:
            self._published = weights
            self._cond.notify_all()

    def close(self, timeout_s: float = 0.0) -> bool:
        """Stop before the next batch. A batch being generated finishes (or fails when Ray shuts down).
        Waits up to `timeout_s` for the thread; returns whether it has ended."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if timeout_s:
            self._thread.join(timeout_s)
        return not self._thread.is_alive()
