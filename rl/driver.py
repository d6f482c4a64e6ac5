"""The driver: `train(cfg)` creates every actor group in order, then runs the GRPO step loop.

    rl train configs/tiny.yaml --steps 20

One step, top to bottom (each phase is timed as time/<phase>):
  `make_round`, in the RolloutsAhead thread (rl/pipeline.py):
    newest weights learner rank 0 -> rollout workers, in buckets        time/sync
    sample prompts (rl/data.py) -> render chat prompts (rl/thinking/)
    generate on RolloutWorkers (rl/rollout/worker.py)                          time/generate
    score on RewardWorkers (rewards/worker.py)                          time/reward
  `grpo_step`, in the driver's thread, once the round is ready         time/wait_rollout
    group-normalised advantages (rl/grpo.py) -> padded TrainBatch -> rollouts/step_N.jsonl
    GRPO updates on the DeepSpeed Learner ranks (rl/learner.py)         time/train
    publish the new weights (object refs) to the RolloutsAhead thread
    metrics.jsonl + wandb; checkpoint every N                           time/checkpoint
With rollout.off_policy_steps=0 the round waits for the previous update (synchronous GRPO); with 1 it
is generated while the learner trains on the previous round.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import logging
import os
import shutil
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

import torch

from envs.tasks import Task, load_task
from rewards.spec import RewardSpec, ScoreRequest, ScoreResult
from rl import checkpoint, fault, grpo
from rl.config import ConfigError, JudgeConfig, RewardModelConfig, RolloutConfig, TrainConfig, save_config, to_dict
from rl.data import TaskMix, group_requests, informative
from rl.evaluate import evaluate
from rl.metrics import RunLogger, rollout_metrics, write_rollouts
from rl.models import resolve_model_path
from rl.pipeline import RolloutsAhead, Weights
from rl.thinking.chat import render_chat
from rl.thinking.budget import sample_budget
from rl.types import Rollout, RolloutRequest, TrainBatch

log = logging.getLogger("rl")


def train(cfg: TrainConfig, resume: bool = False) -> Path:
    """Run GRPO as configured; returns the run folder. `resume` continues from its last checkpoint."""
    import ray
    from transformers import AutoTokenizer

    # 1. Everything that can be checked before any actor starts.
    out = cfg.output_dir
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    tasks = [load_task(t, cfg.run.seed) for t in cfg.data.tasks]
    check_prompt_lengths(tasks, tokenizer, cfg.rollout.max_prompt_tokens)
    judge_models = plan_judges(cfg, tasks)
    start_step, resume_from, run_id = prepare_run_dir(out, cfg, resume)
    mix = TaskMix(tasks, cfg.run.seed)

    # 2. The cluster and the actor groups, in order: learner, rollout, judges (if used), reward.
    started_ray = init_ray(cfg, list(judge_models))
    try:
        learners = create_learners(cfg, model_path)
        rollout_workers = create_rollout_workers(cfg, model_path)
        # Named actors that the rewards find by name; held here, since Ray frees an actor without handles.
        judges = create_judges(cfg, judge_models) if judge_models else []
        reward_workers = create_reward_workers(cfg, tasks)
        sync_dtype = ray.get(rollout_workers[0].weight_dtype.remote())
        restarts = fault.Restarts(cfg.cluster.max_actor_restarts)  # dead rollout/reward actors: retried
        load = functools.partial(load_weights, rollout_workers, restarts=restarts)
        buckets = ray.get(learners[0].weight_bucket_count.remote(sync_dtype, cfg.rollout.sync_bucket_mb))
        publish = functools.partial(publish_weights, learners, dtype=sync_dtype, bucket_mb=cfg.rollout.sync_bucket_mb,
                                    buckets=buckets)
        weights = Weights(0)  # the workers start with the model's own weights
        if resume_from is not None:
            ray.get([lrn.load.remote(str(resume_from)) for lrn in learners])
            weights = publish(start_step)
            load(weights)
            log.info("resumed from %s at step %d", resume_from, start_step)

        logger = RunLogger(out, to_dict(cfg), mode=cfg.logging.wandb_mode, project=cfg.logging.wandb_project,
                           run_name=cfg.run.name, total_steps=cfg.run.steps, start_step=start_step,
                           progress_bar=cfg.logging.progress_bar, run_id=run_id)

        def produce(step: int, loaded: Weights) -> Round:  # runs in the RolloutsAhead thread
            return make_round(step, cfg, mix, tokenizer, rollout_workers, reward_workers, restarts, loaded, load)

        # 3. The step loop. Rollouts come from a background thread, at most rollout.off_policy_steps
        # updates behind the learner (0: synchronous); see rl/pipeline.py.
        ahead = RolloutsAhead(produce, load, start_step, cfg.run.steps, cfg.rollout.off_policy_steps, weights)
        try:
            for step in range(start_step, cfg.run.steps):
                with fault.learner_guard(out, step, learners):  # a dead learner ends the run at its last checkpoint
                    batch_round = ahead.take(step)
                    metrics = grpo_step(step, batch_round, cfg, mix, tokenizer, learners, reward_workers, out,
                                        restarts)
                    weights = publish(step + 1)
                    ahead.publish(weights)
                t0 = time.perf_counter()
                done = step + 1
                if done == cfg.run.steps or (cfg.checkpoint.every and done % cfg.checkpoint.every == 0):
                    with fault.learner_guard(out, step, learners):
                        save_checkpoint(out, done, learners, cfg, logger.run_id)
                metrics["time/checkpoint"] = time.perf_counter() - t0
                if cfg.run.eval_every and (done % cfg.run.eval_every == 0 or done == cfg.run.steps):
                    t0 = time.perf_counter()
                    metrics.update(evaluate(done, tasks, cfg, tokenizer,
                                            eval_round(rollout_workers, reward_workers, restarts, weights, load)))
                    metrics["time/eval"] = time.perf_counter() - t0
                logger.log(done, metrics)
                logger.warn_if_idle(done, metrics)
        finally:
            ahead.close()
        logger.close()
    finally:
        if started_ray:
            ray.shutdown()
    return out


def make_round(step: int, cfg: TrainConfig, mix: TaskMix, tokenizer: Any, rollout_workers: list,
               reward_workers: list, restarts: fault.Restarts, weights: Weights,
               load: Callable[..., float]) -> Round:
    """Step `step`'s batch, generated and scored with `weights` in the rollout workers (plus dynamic
    sampling's extra rounds). A rollout worker that restarts is given `weights` again."""
    def one_round(round_: int, prompts: int) -> Round:
        requests, rows, prefixes = build_requests(step, cfg, mix, tokenizer, round_, prompts)
        return rollout_round(requests, rows, prefixes, rollout_workers, reward_workers, restarts,
                             version=weights.version, resync=lambda worker: load(weights, workers=[worker]))

    first = one_round(0, cfg.rollout.prompts_per_step)
    if not cfg.data.dynamic_sampling:
        return first
    merged, metrics = dynamic_sampling(first, one_round, cfg)
    merged.extra = metrics
    return merged


def grpo_step(step: int, batch_round: Round, cfg: TrainConfig, mix: TaskMix, tokenizer: Any, learners: list,
              reward_workers: list, out: Path, restarts: fault.Restarts) -> dict[str, float]:
    """Advantages, one round of GRPO updates on the learners, rollouts to disk, and the step's metrics."""
    import ray

    from rewards.worker import stats_in_pool

    timer = time.perf_counter()
    rollouts, completions, scored = batch_round.rollouts, batch_round.completions, batch_round.scored
    rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
    advantages = grpo.group_advantages(rewards, cfg.rollout.group_size, normalize_std=cfg.grpo.normalize_std,
                                       eps=cfg.grpo.eps)
    batch = collate(rollouts, advantages, pad_id=tokenizer.pad_token_id or 0)
    if cfg.logging.log_rollouts:  # before training: a crash in the update keeps this batch on disk
        write_rollouts(out / "rollouts" / f"step_{step + 1:06d}.jsonl", rollouts, scored, completions, advantages)

    t0 = time.perf_counter()
    parts = batch.split(len(learners))
    rank_metrics = ray.get([lrn.train.remote(part) for lrn, part in zip(learners, parts)])
    t_train = time.perf_counter() - t0

    generated = sum(sum(r.loss_mask) for r in rollouts)
    metrics = {k: sum(m[k] for m in rank_metrics) / len(rank_metrics) for k in rank_metrics[0]}
    success = {t.name: (t.primary_reward, t.success_threshold) for t in mix.tasks}
    metrics.update(rollout_metrics(rollouts, scored, completions, rewards, cfg.rollout.group_size, success))
    metrics.update(stats_in_pool(reward_workers))
    metrics.update(restarts.metrics())
    metrics.update(batch_round.extra)
    step_s = time.perf_counter() - timer + batch_round.t_wait  # waiting for the round is part of the step
    metrics.update({
        "time/generate": batch_round.t_generate, "time/reward": batch_round.t_reward, "time/train": t_train,
        "time/sync": batch_round.t_sync, "time/wait_rollout": batch_round.t_wait, "time/step": step_s,
        "rollout/staleness": float(step - batch_round.weights_version), "perf/gen_tokens": float(generated),
        "perf/gen_tokens_per_s": generated / max(batch_round.t_generate, 1e-9),
        "perf/samples_per_s": len(rollouts) / max(step_s, 1e-9),
    })
    return metrics


# ------------------------------------------------------------------------------------ step helpers
def build_requests(step: int, cfg: TrainConfig, mix: TaskMix, tokenizer: Any, round_: int = 0,
                   prompts: int | None = None) -> tuple[list[RolloutRequest], list[dict[str, Any]], list[str]]:
    """group_size requests per sampled prompt, plus the row and response prefix of each sample. Round 0
    is the step's batch; rounds >= 1 are dynamic sampling's extra draws (`TaskMix.sample_extra`)."""
    import random

    n = cfg.rollout.prompts_per_step if prompts is None else prompts
    draws = mix.sample(step, n) if round_ == 0 else mix.sample_extra(step, round_, n)
    requests, rows, prefixes = [], [], []
    budget_rng = random.Random(f"{cfg.run.seed}-budget-{step}" + (f"-r{round_}" if round_ else ""))
    for p, draw in enumerate(draws):
        spec = draw.task.config.thinking_budget
        budget = sample_budget(spec, budget_rng) if spec is not None and draw.thinking else None
        group = group_requests(draw.task, draw.row, draw.thinking, uid=f"{step + 1}-{p}" + (f"-r{round_}" if round_ else ""),
                               size=cfg.rollout.group_size, max_new_tokens=cfg.rollout.max_new_tokens,
                               seed=cfg.run.seed * 1_000_003 + step + 7919 * round_, budget=budget, tokenizer=tokenizer)
        for part, out in zip(group, (requests, rows, prefixes)):
            out.extend(part)
    return requests, rows, prefixes


@dataclasses.dataclass
class Round:
    """One round of generation + scoring; dynamic sampling merges several (group_size samples per prompt,
    in order)."""

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


def rollout_round(requests: list[RolloutRequest], rows: list[dict[str, Any]], prefixes: list[str],
                  rollout_workers: list, reward_workers: list, restarts: fault.Restarts, version: int,
                  resync: Callable[[Any], Any]) -> Round:
    """Generate `requests` and score the completions. Rewards get each row plus what only a rollout
    knows: `response_tokens` and `max_new_tokens` (the `overlong` reward), and for agent episodes what
    the env reported (its reward, success, turns) as `env_info`."""
    t0 = time.perf_counter()
    rollouts = generate(rollout_workers, requests, restarts, version=version, resync=resync)
    t_generate = time.perf_counter() - t0
    t0 = time.perf_counter()
    completions = [prefix + r.text for prefix, r in zip(prefixes, rollouts)]
    rows = [{**row, "response_tokens": len(r.response_ids), "max_new_tokens": r.request.max_new_tokens,
             **({"env_info": r.env_info} if r.request.env else {})} for row, r in zip(rows, rollouts)]
    scored = score(reward_workers, [ScoreRequest(c, row) for c, row in zip(completions, rows)], restarts)
    return Round(rollouts, completions, scored, t_generate, time.perf_counter() - t0)


def dynamic_sampling(first: Round, one_round: Callable[[int, int], Round], cfg: TrainConfig
                     ) -> tuple[Round, dict[str, float]]:
    """DAPO dynamic sampling: keep groups whose rewards differ, generate up to
    `data.dynamic_sampling_rounds` extra rounds of prompts for the missing ones, and fill what is still
    missing with zero-variance groups (their advantages are 0) so the batch keeps its size."""
    G, P = cfg.rollout.group_size, cfg.rollout.prompts_per_step
    kept: list[Round] = []
    spare: list[Round] = []
    timing = [first.t_generate, first.t_reward]
    current, rounds = first, 0
    while True:
        for g in range(len(current.rollouts) // G):
            group = Round(*(x[g * G:(g + 1) * G] for x in (current.rollouts, current.completions, current.scored)))
            (kept if informative([s.reward for s in group.scored]) else spare).append(group)
        if len(kept) >= P or rounds >= cfg.data.dynamic_sampling_rounds:
            break
        rounds += 1
        current = one_round(rounds, P - len(kept))
        timing = [timing[0] + current.t_generate, timing[1] + current.t_reward]
    filled = max(0, P - len(kept))
    groups = kept[:P] + spare[:filled]
    merged = Round(*([x for grp in groups for x in getattr(grp, name)] for name in ("rollouts", "completions", "scored")),
                   t_generate=timing[0], t_reward=timing[1])
    return merged, {"rollout/dynamic_skipped": float(len(spare) - filled), "rollout/dynamic_rounds": float(rounds),
                    "rollout/dynamic_filled": float(filled)}


def generate(workers: list, requests: list[RolloutRequest], restarts: fault.Restarts | None = None,
             version: int = 0, resync: Callable[[Any], Any] | None = None) -> list[Rollout]:
    """Split requests over the rollout workers in contiguous chunks (a group stays on one worker, so
    its shared prompt is prefilled once) and reassemble them in order. A worker that dies is restarted
    by Ray, given the current weights (`resync`) and its chunk again; one that restarted unnoticed
    between steps generates with weights version 0 while the learner is at `version` > 0, and is
    treated the same (rl/fault.py). Without `restarts`, a dead worker ends the call."""
    n = len(workers)
    size = -(-len(requests) // n)
    chunks = [requests[i * size:(i + 1) * size] for i in range(n)]
    results = (restarts or fault.Restarts(max_retries=0)).run(
        "rollout", workers, chunks, lambda worker, chunk: worker.generate.remote(chunk), prepare=resync,
        stale=lambda rollouts: version > 0 and any(r.weights_version == 0 for r in rollouts))
    return [r for chunk in results for r in chunk]


def score(workers: list, requests: list[ScoreRequest], restarts: fault.Restarts) -> list[ScoreResult]:
    """Score on the RewardWorkers, dealt round-robin as `rewards.worker.score_in_pool` does (a group's
    samples cost alike, so striding spreads expensive groups); a dead worker's share is retried."""
    k = len(workers)
    shares = [requests[i::k] for i in range(k)]
    scored = restarts.run("reward", workers, shares, lambda worker, share: worker.score.remote(share))
    order = [i for first in range(k) for i in range(first, len(requests), k)]  # request index of each result
    flat = [result for share in scored for result in share]
    return [result for _, result in sorted(zip(order, flat), key=lambda pair: pair[0])]


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
    return TrainBatch(input_ids, attention, loss_mask, advantages.float(), behavior, prompt_lengths)


def publish_weights(learners: list, version: int, dtype: str, bucket_mb: float, buckets: int) -> Weights:
    """Ask every learner rank for its weight buckets, one call per bucket (all ranks take part: ZeRO-3
    gathers each bucket collectively); returns at once with the object refs, which `load_weights`
    hands to the rollout workers. Only the driver's thread may call this (ranks must see one order)."""
    per_rank = [tuple(lrn.weight_bucket.remote(i, dtype, bucket_mb) for i in range(buckets)) for lrn in learners]
    return Weights(version, per_rank[0], tuple(ref for refs in per_rank[1:] for ref in refs))


def load_weights(rollout_workers: list, weights: Weights, restarts: fault.Restarts | None = None,
                 workers: list | None = None) -> float:
    """Learner rank 0's weight buckets -> the rollout workers (`workers`: a subset, for a restarted
    one); returns seconds until all have loaded them. The workers get the buckets' object refs, not
    the weights: each fetches bucket i from the object store as its engine consumes it, possibly
    while the learner still copies bucket i + 1, and the weights never pass through the driver.
    With `restarts`, a worker that dies meanwhile is counted and re-synced before it next generates."""
    import ray

    if not weights.buckets:  # the model's own weights, which every worker (also a restarted one) starts with
        return 0.0
    t0 = time.perf_counter()
    targets = rollout_workers if workers is None else workers
    loads = [w.load_weights.remote(list(weights.buckets), weights.version) for w in targets]
    ray.get(list(weights.others))  # the other ranks' part of a ZeRO-3 gather: surface their errors
    if restarts is None:
        ray.get(loads)
    else:
        restarts.tolerate("rollout", targets, loads)
    return time.perf_counter() - t0


def eval_round(rollout_workers: list, reward_workers: list, restarts: fault.Restarts, weights: Weights,
               load: Callable[..., float]) -> Callable:
    """rl.evaluate's `generate + score` callback, with the learner's newest weights: they are loaded
    first, since the rollout workers may hold older ones (the last update, or off-policy lag)."""
    load(weights)

    def run(requests, rows, prefixes):
        r = rollout_round(requests, rows, prefixes, rollout_workers, reward_workers, restarts, version=weights.version,
                          resync=lambda worker: load(weights, workers=[worker]))
        return r.rollouts, r.scored

    return run


def save_checkpoint(out: Path, step: int, learners: list, cfg: TrainConfig, run_id: str | None) -> None:
    import ray

    staging = checkpoint.staging_dir(out, step)
    ray.get([lrn.save.remote(str(staging), {"step": step}) for lrn in learners])
    checkpoint.finalize(out, staging, step, {"wandb_run_id": run_id, "seed": cfg.run.seed}, cfg.checkpoint.keep)


# ------------------------------------------------------------------------------------- set-up helpers
def check_prompt_lengths(tasks: list[Task], tokenizer: Any, limit: int) -> None:
    for task in tasks:
        for i, row in enumerate(task.train + task.eval):
            messages, tools = task.chat(row, True)
            n = len(tokenizer.encode(render_chat(tokenizer, messages, thinking=True, tools=tools),
                                     add_special_tokens=False))
            if n > limit:
                raise ConfigError(f"task {task.name!r} ({task.source}): row {i} renders to a {n}-token prompt, over "
                                  f"rollout.max_prompt_tokens={limit}; raise the limit or drop long rows")


def prepare_run_dir(out: Path, cfg: TrainConfig, resume: bool) -> tuple[int, Path | None, str | None]:
    """Create the run folder; on resume find the checkpoint and drop metrics logged after it."""
    if not resume and (out / "metrics.jsonl").exists():
        raise ConfigError(f"run folder {out} already holds a run; pass --resume to continue it, or choose "
                          "another --output-dir")
    start, found, run_id = 0, None, None
    if resume:
        latest = checkpoint.latest_checkpoint(out)
        if latest is None:
            log.warning("--resume: no complete checkpoint in %s, starting from step 0", out)
        else:
            found, state = latest
            start, run_id = state["step"], state.get("wandb_run_id")
        _truncate_metrics(out / "metrics.jsonl", start)
    (out / "rollouts").mkdir(parents=True, exist_ok=True)
    for stale in checkpoint.checkpoints_dir(out).glob("*.tmp"):
        shutil.rmtree(stale)  # a save that was killed half-way
    save_config(cfg, out / "config.yaml")
    return start, found, run_id


def _truncate_metrics(path: Path, keep_through: int) -> None:
    import json

    if not path.exists():
        return
    lines = [ln for ln in path.read_text().splitlines() if ln.strip() and json.loads(ln)["step"] <= keep_through]
    path.write_text("".join(ln + "\n" for ln in lines))


def init_ray(cfg: TrainConfig, judge_roles: list[str] | None = None) -> bool:
    """Join the cluster at cluster.address / $RAY_ADDRESS, or start a local one; True if we started it.
    `judge_roles` ("judge", "reward_model") are the model-reward actors the local cluster must fit too."""
    import ray

    if ray.is_initialized():
        return False
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
        return True
    wanted = (cfg.rollout.num_workers * cfg.rollout.cpus_per_worker + cfg.learner.num_workers * cfg.learner.cpus_per_worker
              + cfg.reward.num_workers * cfg.reward.cpus_per_worker)
    for role in judge_roles or []:
        section = judge_section(cfg, role)
        wanted += section.num_workers * section.cpus_per_worker
    num_cpus = cfg.cluster.num_cpus or max(int(wanted + 0.999), os.cpu_count() or 1)
    ray.init(num_cpus=num_cpus, num_gpus=cfg.cluster.num_gpus, include_dashboard=False, log_to_driver=True)
    return True


def actor_env(threads: int) -> dict[str, str]:
    """Environment for every actor. Ray sets OMP_NUM_THREADS to the logical CPU request (often 1);
    phases do not overlap in a synchronous step, so each actor may use the node's cores."""
    env = {"OMP_NUM_THREADS": str(threads or os.cpu_count() or 1), "TOKENIZERS_PARALLELISM": "false",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    return env


def placement(role: str, n: int, cpus: float, gpus: float, resources: dict[str, float], strategy: str) -> Any:
    """A placement group with one bundle per actor of `role`; fails clearly if it cannot be placed."""
    import ray
    from ray.util.placement_group import placement_group

    bundle = {"CPU": cpus, **({"GPU": gpus} if gpus else {}), **resources}
    pg = placement_group([dict(bundle) for _ in range(n)], strategy=strategy, name=f"rl-{role}")
    ready, _ = ray.wait([pg.ready()], timeout=float(os.environ.get("RL_PLACEMENT_TIMEOUT_S", 120)))
    if not ready:
        raise RuntimeError(f"cannot place {n} x {bundle} for the {role} actors; the cluster has "
                           f"{ray.available_resources()} free. Lower {role}.*_per_worker or add nodes.")
    return pg


def _options(pg: Any, index: int, cpus: float, gpus: float, env: dict[str, str]) -> dict[str, Any]:
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    return {"num_cpus": cpus, "num_gpus": gpus, "runtime_env": {"env_vars": env},
            "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)}


def create_learners(cfg: TrainConfig, model_path: str) -> list:
    import ray

    from rl.learner import Learner

    lc = cfg.learner
    pg = placement("learner", lc.num_workers, lc.cpus_per_worker, lc.gpus_per_worker, lc.resources,
                   cfg.cluster.placement_strategy)
    actor = ray.remote(Learner)
    learners = [actor.options(**_options(pg, i, lc.cpus_per_worker, lc.gpus_per_worker, actor_env(lc.threads)))
                .remote(cfg, model_path, i, lc.num_workers) for i in range(lc.num_workers)]
    addr, port = ray.get(learners[0].rendezvous.remote())
    ray.get([lrn.setup.remote(addr, port) for lrn in learners])
    return learners


def create_rollout_workers(cfg: TrainConfig, model_path: str) -> list:
    import ray

    from rl.rollout.worker import RolloutWorker

    rc = cfg.rollout
    pg = placement("rollout", rc.num_workers, rc.cpus_per_worker, rc.gpus_per_worker, rc.resources,
                   cfg.cluster.placement_strategy)
    actor = ray.remote(RolloutWorker)
    workers = [actor.options(**_options(pg, i, rc.cpus_per_worker, rc.gpus_per_worker, actor_env(rc.threads)),
                             max_restarts=cfg.cluster.max_actor_restarts)  # in-flight work: rl/fault.py
               .remote(model_path, rc.backend, temperature=rc.temperature, top_p=rc.top_p, seed=cfg.run.seed + i,
                       threads=rc.threads, engine_kwargs=engine_kwargs(rc)) for i in range(rc.num_workers)]
    ray.get([w.pid.remote() for w in workers])  # surface start-up errors here, not mid-step
    return workers


def engine_kwargs(rc: RolloutConfig) -> dict[str, Any]:
    """The rollout engine's settings from the config (rl/rollout/engines.py `make_engine`)."""
    return {"dtype": rc.dtype, "gpu_memory_utilization": rc.gpu_memory_utilization, "kv_cache_gb": rc.kv_cache_gb,
            "enforce_eager": rc.enforce_eager, "max_model_len": rc.max_prompt_tokens + rc.max_new_tokens + 256}


def create_reward_workers(cfg: TrainConfig, tasks: list[Task]) -> list:
    import ray

    from rewards.worker import RewardWorker

    rw = cfg.reward
    specs = {t.name: t.rewards for t in tasks}
    pg = placement("reward", rw.num_workers, rw.cpus_per_worker, 0, rw.resources, cfg.cluster.placement_strategy)
    actor = ray.remote(RewardWorker)
    workers = [actor.options(**_options(pg, i, rw.cpus_per_worker, 0, actor_env(1)),
                             max_restarts=cfg.cluster.max_actor_restarts)
               .remote(specs, timeout_s=rw.timeout_s, num_procs=rw.procs_per_worker, model_timeout_s=rw.model_timeout_s)
               for i in range(rw.num_workers)]
    ray.get([w.stats.remote() for w in workers])
    return workers


# ------------------------------------------------------------------------- judge and reward-model actors
JUDGE_ROLES = {"judge": "judge", "reward_model": "model"}
"""Built-in model-based reward -> its keyword naming the actor to call (rewards/judge.py, reward_model.py)."""


def judge_section(cfg: TrainConfig, role: str) -> JudgeConfig | RewardModelConfig:
    return {"judge": cfg.judge, "reward_model": cfg.reward_model}[role]


def plan_judges(cfg: TrainConfig, tasks: list[Task]) -> dict[str, str]:
    """{role: resolved model} for the judge / reward-model actors this run needs, checked before any
    actor starts. A role is needed when a task lists its built-in reward calling the default actor
    (not a URL or folder of its own), or when its section sets `force`."""
    from rewards.judge import JUDGE_ACTOR, JudgeOptions
    from rewards.reward_model import REWARD_MODEL_ACTOR, RewardModelWorker

    actor_names = {"judge": JUDGE_ACTOR, "reward_model": REWARD_MODEL_ACTOR}
    models = {}
    for role, kwarg in JUDGE_ROLES.items():
        section = judge_section(cfg, role)
        users = sorted({t.name for t in tasks for s in t.rewards
                        if s.name == role and s.kwargs.get(kwarg, actor_names[role]) == actor_names[role]})
        if not users and not section.force:
            continue
        if section.model is None:
            why = f"task(s) {users} use the {role!r} reward" if users else f"{role}.force is true"
            url = ", or an http(s):// URL of an OpenAI-compatible server" if role == "judge" else ""
            raise ConfigError(f"{why}, which needs the {actor_names[role]!r} actor, but {role}.model is null; "
                              f"set {role}.model to a model folder or packaged:<name> (see `rl models`){url}")
        try:
            if role == "judge":
                JudgeOptions(**judge_kwargs(cfg, role))
            else:
                inspect.signature(RewardModelWorker).bind("model", **judge_kwargs(cfg, role))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{role}.options: {exc}") from None
        url = section.model.startswith(("http://", "https://"))
        models[role] = section.model if url else resolve_model_path(section.model)
    return models


def judge_kwargs(cfg: TrainConfig, role: str) -> dict[str, Any]:
    """Constructor keywords of the role's worker class (JudgeWorker / RewardModelWorker)."""
    if role == "judge":
        jc = cfg.judge
        return {"mode": jc.mode, "micro_batch_size": jc.micro_batch_size, **jc.options}
    rc = cfg.reward_model
    return {"micro_batch_size": rc.micro_batch_size, "max_length": rc.max_length, **rc.options}


def create_judges(cfg: TrainConfig, models: dict[str, str]) -> list:
    """The judge / reward-model actors, named as the rewards look them up (rewards/judge.py): "rl-judge"
    and "rl-reward-model" (replicas "-1", "-2", ...) in `RAY_NAMESPACE`, each taking up to
    `max_concurrency` calls at once so that its batcher can merge them."""
    import ray

    from rewards.judge import JUDGE_ACTOR, RAY_NAMESPACE, JudgeWorker, replica_name
    from rewards.reward_model import REWARD_MODEL_ACTOR, RewardModelWorker

    kinds = {"judge": (JudgeWorker, JUDGE_ACTOR), "reward_model": (RewardModelWorker, REWARD_MODEL_ACTOR)}
    for role in models:
        for i in range(judge_section(cfg, role).num_workers):
            _check_name_free(replica_name(kinds[role][1], i), RAY_NAMESPACE)
    actors = []
    for role, model in models.items():
        section, (cls, name) = judge_section(cfg, role), kinds[role]
        pg = placement(role, section.num_workers, section.cpus_per_worker, section.gpus_per_worker,
                       section.resources, cfg.cluster.placement_strategy)
        for i in range(section.num_workers):
            options = _options(pg, i, section.cpus_per_worker, section.gpus_per_worker, actor_env(section.threads))
            options |= {"name": replica_name(name, i), "namespace": RAY_NAMESPACE,
                        "max_concurrency": section.max_concurrency}
            actors.append(ray.remote(cls).options(**options).remote(model, **judge_kwargs(cfg, role)))
    ray.get([a.score_batch.remote([]) for a in actors])  # surface start-up errors (a bad model path) here
    return actors


def _check_name_free(name: str, namespace: str) -> None:
    """Fail before creating anything when another run on this cluster already serves `name`."""
    import ray

    try:
        ray.get_actor(name, namespace=namespace)
    except ValueError:  # no actor of that name: free
        return
    raise RuntimeError(f"Ray actor {name!r} already exists in namespace {namespace!r}: another run on this "
                       "cluster holds that name. Wait for it to finish, or give this run its own cluster")
