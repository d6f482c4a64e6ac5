"""The reward Ray actor: a `RewardRunner` behind an actor, plus helpers to use a pool of them.

`RewardWorker` is a plain class, so it is importable and testable without Ray; the driver makes it
an actor with the resources it wants (give it as many CPUs as it runs worker processes):

    Actor = ray.remote(num_cpus=4)(RewardWorker)
    workers = [Actor.remote(specs, timeout_s=10.0, num_procs=4) for _ in range(2)]
    results = ray.get(workers[0].score.remote(requests))   # list[ScoreResult]
    metrics = stats_in_pool(workers)                  # counters summed, agreement re-weighted

Dealing a batch over a pool of them is rl/round.py `score`. Ray is imported inside functions only, so `rewards` stays importable without it.
"""
from __future__ import annotations

import os
from typing import Any

from rewards.runner import RewardRunner
from rewards.spec import RewardSpec, ScoreRequest, ScoreResult


class RewardWorker:
    """Wraps a `RewardRunner`; its worker processes start with the actor and stop with `close()`."""

    def __init__(self, specs: dict[str, list[RewardSpec]], timeout_s: float = 10.0, num_procs: int = 1,
                 model_timeout_s: float | None = None):
        import ray

        if ray.is_initialized() and ray.get_runtime_context().get_actor_id() is not None:
            # The runner's processes join the cluster to call judge actors, with ray.init(address="auto"),
            # which picks the newest cluster on the machine when several run; pin them to this actor's.
            # (Only inside an actor: its process is ours to configure, a driver's is not.)
            os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        self.runner = RewardRunner(specs, timeout_s=timeout_s, num_procs=num_procs, model_timeout_s=model_timeout_s)

    def score(self, requests: list[ScoreRequest]) -> list[ScoreResult]:
        return self.runner.score(requests)

    def stats(self, reset: bool = True) -> dict[str, float]:
        return self.runner.stats(reset=reset)

    def close(self) -> None:
        self.runner.close()


def stats_in_pool(workers: list[Any], reset: bool = True) -> dict[str, float]:
    """Merge the actors' `stats()`: counters are summed, agreement fractions re-weighted by their counts."""
    import ray

    return merge_stats(ray.get([worker.stats.remote(reset) for worker in workers]))


def merge_stats(parts: list[dict[str, float]]) -> dict[str, float]:
    """Sum the counters of several `RewardRunner.stats()`; average `reward_agreement/<task>` by
    `reward_agreement_count/<task>` (a plain sum of fractions would be meaningless)."""
    merged: dict[str, float] = {}
    for part in parts:
        for key, value in part.items():
            if key.startswith("reward_agreement/"):
                value *= part[key.replace("reward_agreement/", "reward_agreement_count/", 1)]
            merged[key] = merged.get(key, 0.0) + value
    for key in merged:
        if key.startswith("reward_agreement/"):
            merged[key] /= merged[key.replace("reward_agreement/", "reward_agreement_count/", 1)]
    return merged
