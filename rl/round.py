"""A round: requests built from the task mix, generated on the rollout workers, scored on the reward
workers. A step's batch is one round, plus dynamic sampling's extra rounds; an evaluation is a round
over eval prompts; `rl build-fusion-data` runs rounds too.

    workers = RoundWorkers(rollout_workers, reward_workers, restarts)
    batch = step_batch(step, cfg, mix, tokenizer, workers, weights, sync.load)   # ScoredRollouts
    train_batch = collate(batch.rollouts, advantages, pad_id)                      # padded tensors

Requests are dealt to rollout workers in contiguous chunks (a GRPO group stays on one worker, so its
prompt is prefilled once) and to reward workers round-robin (a group's samples cost alike, so
striding spreads expensive groups). A worker that dies is restarted by Ray and given its share again
(rl/fault.py).
"""
from __future__ import annotations

import dataclasses
import random
import time
from collections.abc import Callable
from typing import Any

import torch

from envs.tasks import Task
from rewards.spec import ScoreRequest, ScoreResult
from rl import fault
from rl.config import ConfigError, TrainConfig
from rl.data import TaskMix, group_requests, informative
from rl.thinking.budget import sample_budget
from rl.thinking.chat import render_chat
from rl.types import Rollout, RolloutRequest, TrainBatch
from rl.weight_sync import PublishedWeights


@dataclasses.dataclass
class RoundWorkers:
    """The actors a round runs on, and the restart budget shared by all rounds of a run."""

    rollout: list
    reward: list
    restarts: fault.Restarts = dataclasses.field(default_factory=lambda: fault.Restarts(max_retries=0))


@dataclasses.dataclass
class ScoredRollouts:
    """Rollouts with their completions (response prefix + text) and scores, group_size per prompt in
    order; for a step, all its rounds merged."""

    rollouts: list[Rollout]
    completions: list[str]
    scored: list[ScoreResult]
    t_generate: float = 0.0
    t_reward: float = 0.0
    t_sync: float = 0.0
    """Loading the weights it was generated with into the rollout workers (0 if they held them)."""
    t_wait: float = 0.0
    """How long the driver waited for it after the previous update (all of generate + reward when
    synchronous; less when it was generated ahead, rl/pipeline.py)."""
    weights_version: int = 0
    extra: dict[str, float] = dataclasses.field(default_factory=dict)
    """Dynamic sampling's metrics."""


# -------------------------------------------------------------------------------------------- requests
def check_prompt_lengths(tasks: list[Task], tokenizer: Any, limit: int) -> None:
    """Every row's prompt fits rollout.max_prompt_tokens (checked before any actor starts)."""
    for task in tasks:
        for i, row in enumerate(task.train + task.eval):
            messages, tools = task.chat(row, True)
            n = len(tokenizer.encode(render_chat(tokenizer, messages, thinking=True, tools=tools),
                                     add_special_tokens=False))
            if n > limit:
                raise ConfigError(f"task {task.name!r} ({task.source}): row {i} renders to a {n}-token prompt, over "
                                  f"rollout.max_prompt_tokens={limit}; raise the limit or drop long rows")


def build_requests(step: int, cfg: TrainConfig, mix: TaskMix, tokenizer: Any, round_index: int = 0,
                   prompts: int | None = None) -> tuple[list[RolloutRequest], list[dict[str, Any]], list[str]]:
    """group_size requests per sampled prompt, plus the row and response prefix of each sample. Round 0
    is the step's batch; rounds >= 1 are dynamic sampling's extra draws (`TaskMix.sample_extra`)."""
    n = cfg.rollout.prompts_per_step if prompts is None else prompts
    draws = mix.sample(step, n) if round_index == 0 else mix.sample_extra(step, round_index, n)
    suffix = f"-r{round_index}" if round_index else ""
    requests, rows, prefixes = [], [], []
    budget_rng = random.Random(f"{cfg.run.seed}-budget-{step}{suffix}")
    for p, draw in enumerate(draws):
        spec = draw.task.config.thinking_budget
        budget = sample_budget(spec, budget_rng) if spec is not None and draw.thinking else None
        group = group_requests(draw.task, draw.row, draw.thinking, uid=f"{step + 1}-{p}{suffix}",
                               size=cfg.rollout.group_size, max_new_tokens=cfg.rollout.max_new_tokens,
                               seed=cfg.run.seed * 1_000_003 + step + 7919 * round_index, budget=budget,
                               tokenizer=tokenizer, switch=cfg.thinking.switch)
        for part, out in zip(group, (requests, rows, prefixes)):
            out.extend(part)
    return requests, rows, prefixes


# ------------------------------------------------------------------------------------------- one round
def run_round(requests: list[RolloutRequest], rows: list[dict[str, Any]], prefixes: list[str],
              workers: RoundWorkers, version: int = 0, resync: Callable[[Any], Any] | None = None
              ) -> ScoredRollouts:
    """Generate `requests` and score the completions (`version`, `resync`: see `generate`)."""
    t0 = time.perf_counter()
    rollouts = generate(workers, requests, version=version, resync=resync)
    t_generate = time.perf_counter() - t0
    t0 = time.perf_counter()
    completions = [prefix + r.text for prefix, r in zip(prefixes, rollouts)]
    scored = score(workers, [ScoreRequest(c, row) for c, row in zip(completions, scoring_rows(rows, rollouts))])
    return ScoredRollouts(rollouts, completions, scored, t_generate, time.perf_counter() - t0)


def scoring_rows(rows: list[dict[str, Any]], rollouts: list[Rollout]) -> list[dict[str, Any]]:
    """Each row plus what only a rollout knows: `response_tokens` and `max_new_tokens` (the `overlong`
    reward), and for agent episodes what the env reported (its reward, success, turns) as `env_info`."""
    return [{**row, "response_tokens": len(r.response_ids), "max_new_tokens": r.request.max_new_tokens,
             **({"env_info": r.env_info} if r.request.env else {})} for row, r in zip(rows, rollouts)]


def generate(workers: RoundWorkers, requests: list[RolloutRequest], version: int = 0,
             resync: Callable[[Any], Any] | None = None) -> list[Rollout]:
    """Split requests over the rollout workers in contiguous chunks and reassemble them in order. A
    worker that dies is restarted by Ray, given the current weights (`resync`) and its chunk again; one
    that restarted unnoticed between steps generates with weights version 0 while the learner is at
    `version` > 0, and is treated the same (rl/fault.py)."""
    n = len(workers.rollout)
    size = -(-len(requests) // n)
    chunks = [requests[i * size:(i + 1) * size] for i in range(n)]
    results = workers.restarts.run(
        "rollout", workers.rollout, chunks, lambda worker, chunk: worker.generate.remote(chunk), prepare=resync,
        stale=lambda rollouts: version > 0 and any(r.weights_version == 0 for r in rollouts))
    return [r for chunk in results for r in chunk]


def score(workers: RoundWorkers, requests: list[ScoreRequest]) -> list[ScoreResult]:
    """Score on the RewardWorkers, dealt round-robin (request i to worker i % k); results in request
    order. A dead worker's share is retried on its restarted actor."""
    k = len(workers.reward)
    if k == 0:
        raise ValueError("scoring needs at least one RewardWorker actor; the pool is empty")
    shares = [requests[i::k] for i in range(k)]
    scored = workers.restarts.run("reward", workers.reward, shares, lambda worker, share: worker.score.remote(share))
    results: list[ScoreResult | None] = [None] * len(requests)
    for i, share_results in enumerate(scored):  # share i holds requests i, i + k, i + 2k, ...
        results[i::k] = share_results
    return results  # type: ignore[return-value]


# ---------------------------------------------------------------------------------------- a step's batch
def step_batch(step: int, cfg: TrainConfig, mix: TaskMix, tokenizer: Any, workers: RoundWorkers,
               weights: PublishedWeights, load: Callable[..., float]) -> ScoredRollouts:
    """Step `step`'s batch, generated and scored with `weights` in the rollout workers (plus dynamic
    sampling's extra rounds). A rollout worker that restarts is given `weights` again (`load`)."""
    def one_round(round_index: int, prompts: int) -> ScoredRollouts:
        requests, rows, prefixes = build_requests(step, cfg, mix, tokenizer, round_index, prompts)
        return run_round(requests, rows, prefixes, workers, version=weights.version,
                         resync=lambda worker: load(weights, workers=[worker]))

    first = one_round(0, cfg.rollout.prompts_per_step)
    if not cfg.data.dynamic_sampling:
        return first
    merged, metrics = dynamic_sampling(first, one_round, cfg)
    merged.extra = metrics
    return merged


def dynamic_sampling(first: ScoredRollouts, one_round: Callable[[int, int], ScoredRollouts], cfg: TrainConfig
                     ) -> tuple[ScoredRollouts, dict[str, float]]:
    """DAPO dynamic sampling: keep groups whose rewards differ, generate up to
    `data.dynamic_sampling_rounds` extra rounds of prompts for the missing ones, and fill what is still
    missing with zero-variance groups (their advantages are 0) so the batch keeps its size."""
    G, P = cfg.rollout.group_size, cfg.rollout.prompts_per_step
    kept: list[ScoredRollouts] = []
    spare: list[ScoredRollouts] = []
    timing = [first.t_generate, first.t_reward]
    current, rounds = first, 0
    while True:
        for g in range(len(current.rollouts) // G):
            group = ScoredRollouts(*(x[g * G:(g + 1) * G] for x in (current.rollouts, current.completions,
                                                                     current.scored)))
            (kept if informative([s.reward for s in group.scored]) else spare).append(group)
        if len(kept) >= P or rounds >= cfg.data.dynamic_sampling_rounds:
            break
        rounds += 1
        current = one_round(rounds, P - len(kept))
        timing = [timing[0] + current.t_generate, timing[1] + current.t_reward]
    filled = max(0, P - len(kept))
    groups = kept[:P] + spare[:filled]
    merged = ScoredRollouts(*([x for grp in groups for x in getattr(grp, name)]
                              for name in ("rollouts", "completions", "scored")),
                            t_generate=timing[0], t_reward=timing[1])
    return merged, {"rollout/dynamic_skipped": float(len(spare) - filled), "rollout/dynamic_rounds": float(rounds),
                    "rollout/dynamic_filled": float(filled)}


def collate(rollouts: list[Rollout], advantages: torch.Tensor, pad_id: int) -> TrainBatch:
    """Right-padded (B, T) tensors: prompt + response; loss only on model-sampled response tokens."""
    width = max(len(r.request.prompt_ids) + len(r.response_ids) for r in rollouts)
    B = len(rollouts)
    input_ids = torch.full((B, width), pad_id, dtype=torch.long)
    attention = torch.zeros((B, width), dtype=torch.long)
    loss_mask = torch.zeros((B, width), dtype=torch.long)
    behavior = torch.zeros((B, width), dtype=torch.float32)
    for i, r in enumerate(rollouts):
        p, n = len(r.request.prompt_ids), len(r.response_ids)
        input_ids[i, :p + n] = torch.tensor(r.request.prompt_ids + r.response_ids)
        attention[i, :p + n] = 1
        loss_mask[i, p:p + n] = torch.tensor(r.loss_mask)
        behavior[i, p:p + n] = torch.tensor(r.logprobs)
    prompt_lengths = torch.tensor([len(r.request.prompt_ids) for r in rollouts], dtype=torch.long)
    truncated = torch.tensor([int(r.truncated) for r in rollouts], dtype=torch.long)
    return TrainBatch(input_ids, attention, loss_mask, advantages.float(), behavior, prompt_lengths, truncated)
