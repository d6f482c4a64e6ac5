"""Periodic evaluation on every task's held-out eval split: pass@1 and pass@k per task.

    rl train configs/general_tiny.yaml --run.eval_every 10 --run.eval_samples 4

Every `run.eval_every` steps (and after the last one) the driver calls `evaluate`: the first
`run.eval_prompts` rows of each task's eval split are rolled out `run.eval_samples` (= k) times with
the current weights on the rollout workers, at the training temperature, and scored by the reward
workers exactly like training samples. A sample is solved when the task's primary (first) reward is
at least the task's `success_threshold`. Per task, with n = k samples and c solved per prompt:
pass@1 = mean of c / n and pass@k = mean of 1 - C(n - c, k) / C(n, k) (the unbiased estimator of
Chen et al. 2021, which is 1 when any sample is solved). Each prompt's mode is fixed per row (its
flags, or a seeded draw with the task's thinking_ratio), so successive evaluations are comparable.

Metrics: eval/<task>/pass@1, eval/<task>/pass@<k>, eval/<task>/reward, eval/<task>/prompts, and the
means over tasks eval/pass@1, eval/pass@<k>, eval/reward.
"""
from __future__ import annotations

import math
import random
from typing import Any, Callable

from envs.tasks import Row, Task
from rewards.spec import ScoreResult
from rl.config import TrainConfig
from rl.data import group_requests
from rl.thinking.budget import sample_budget
from rl.types import Rollout, RolloutRequest

RunRound = Callable[[list[RolloutRequest], list[Row], list[str]], tuple[list[Rollout], list[ScoreResult]]]
"""Generate requests and score them: (requests, rows, response prefixes) -> (rollouts, scores)."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c are correct (Chen et al. 2021, eq. 1)."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def solved(result: ScoreResult, task: Task) -> bool:
    """The task's primary reward reached its success threshold (a failed or None component is not)."""
    value = result.components.get(task.primary_reward)
    return value is not None and value >= task.success_threshold


def eval_mode(task: Task, row: Row, index: int, seed: int) -> bool:
    fixed = task.row_mode(row)
    if fixed is not None:
        return fixed
    return random.Random(f"{seed}-eval-{task.name}-{index}").random() < task.config.thinking_ratio


def row_requests(task: Task, row: Row, index: int, cfg: TrainConfig, tokenizer: Any, k: int, uid: str
                 ) -> tuple[list[RolloutRequest], list[Row], list[str]]:
    """k requests for the row at `index`, in the mode fixed for it (`eval_mode`) and with a thinking budget
    drawn for it, both reproducible: the same every time the row is sampled (evaluation, `rl filter`)."""
    thinking = eval_mode(task, row, index, cfg.run.seed)
    spec = task.config.thinking_budget
    budget_rng = random.Random(f"{cfg.run.seed}-eval-budget-{task.name}-{index}")
    budget = sample_budget(spec, budget_rng) if spec is not None and thinking else None
    return group_requests(task, row, thinking, uid=uid, size=k, max_new_tokens=cfg.rollout.max_new_tokens,
                          seed=cfg.run.seed * 1_000_003 + index, budget=budget, tokenizer=tokenizer,
                          switch=cfg.thinking.switch)


def eval_requests(step: int, tasks: list[Task], cfg: TrainConfig, tokenizer: Any
                  ) -> tuple[list[RolloutRequest], list[Row], list[str], list[tuple[Task, int]]]:
    """k requests per eval prompt, and which (task, prompt index) each group of k belongs to."""
    requests, rows, prefixes, groups = [], [], [], []
    for task in tasks:
        for i, row in enumerate(task.eval[: cfg.run.eval_prompts]):
            group = row_requests(task, row, i, cfg, tokenizer, cfg.run.eval_samples, uid=f"eval-{step}-{task.name}-{i}")
            for part, out in zip(group, (requests, rows, prefixes)):
                out.extend(part)
            groups.append((task, i))
    return requests, rows, prefixes, groups


def summarize(groups: list[tuple[Task, int]], scored: list[ScoreResult], k: int) -> dict[str, float]:
    """Per-task and mean pass@1 / pass@k / reward from k scored samples per group, in order."""
    per_task: dict[str, dict[str, list[float]]] = {}
    for g, (task, _) in enumerate(groups):
        results = scored[g * k:(g + 1) * k]
        c = sum(solved(r, task) for r in results)
        stats = per_task.setdefault(task.name, {"pass@1": [], f"pass@{k}": [], "reward": []})
        stats["pass@1"].append(c / k)
        stats[f"pass@{k}"].append(pass_at_k(k, c, k))
        stats["reward"].append(sum(r.reward for r in results) / k)
    metrics: dict[str, float] = {}
    for name, stats in per_task.items():
        for key, values in stats.items():
            metrics[f"eval/{name}/{key}"] = sum(values) / len(values)
        metrics[f"eval/{name}/prompts"] = float(len(stats["reward"]))
    for key in ("pass@1", f"pass@{k}", "reward"):
        values = [metrics[f"eval/{name}/{key}"] for name in per_task]
        if values:
            metrics[f"eval/{key}"] = sum(values) / len(values)
    return metrics


def evaluate(step: int, tasks: list[Task], cfg: TrainConfig, tokenizer: Any, run_round: RunRound) -> dict[str, float]:
    """Roll out and score every task's eval prompts; returns the eval/* metrics (see the module docstring)."""
    requests, rows, prefixes, groups = eval_requests(step, tasks, cfg, tokenizer)
    if not requests:
        return {}
    _, scored = run_round(requests, rows, prefixes)
    return summarize(groups, scored, cfg.run.eval_samples)
