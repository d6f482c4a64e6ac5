"""The driver: `train(cfg)` creates every actor group, then runs the GRPO step loop.

    rl train configs/tiny.yaml --steps 20

One step, top to bottom (each phase is timed as time/<phase>):
  `step_batch` (rl/round.py), in the RolloutsAhead thread (rl/pipeline.py):
    newest weights learner rank 0 -> rollout workers, in buckets (rl/weight_sync.py)   time/sync
    sample prompts (rl/data.py), render them, generate on the RolloutWorkers           time/generate
    score on the RewardWorkers                                                         time/reward
  `grpo_step`, here, once the batch is ready                                          time/wait_rollout
    group-normalised advantages (rl/grpo.py) -> padded TrainBatch -> rollouts/step_N.jsonl
    GRPO updates on the DeepSpeed Learner ranks (rl/learner.py)                        time/train
  publish the new weights to the RolloutsAhead thread; metrics.jsonl + wandb; checkpoint every N
With rollout.off_policy_steps=0 the batch waits for the previous update (synchronous GRPO); with 1 it
is generated while the learner trains on the previous batch. docs/architecture.md traces it file by file.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch

from envs.tasks import Task, load_task
from rewards.worker import stats_in_pool
from rl import checkpoint, fault, grpo
from rl.actors import (create_judges, create_teachers, create_training_actors, init_ray, plan_judges,
                       save_checkpoint, teacher_model_path)
from rl.checkpoint import prepare_run_dir
from rl.config import TrainConfig
from rl.config_io import to_dict
from rl.console import log_to_run_folder
from rl.data import TaskMix
from rl.evaluate import evaluate
from rl.metrics import RunLogger, rollout_metrics, write_rollouts
from rl.models import resolve_model_path
from rl.pipeline import RolloutsAhead
from rl.report import summary, write_report
from rl.rollout.engines import check_tensor_parallel
from rl.round import RoundWorkers, ScoredRollouts, check_prompt_lengths, collate, run_round, step_batch
from rl.weight_sync import CollectiveSync, ObjectStoreSync, PublishedWeights, connect_sync, resolve_sync_method

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
    resolve_sync_method(cfg)  # a collective sync that cannot run here is a config error now
    check_tensor_parallel(model_path, cfg.rollout.tensor_parallel_size)  # TP must divide the model's heads
    teacher_path = teacher_model_path(cfg, model_path)  # distill.teacher exists and shares the vocabulary
    start_step, resume_from, run_id = prepare_run_dir(out, cfg, resume)
    log_to_run_folder(out)  # the libraries' INFO lines (and the actors' output) go there, not to the console
    mix = TaskMix(tasks, cfg.run.seed)
    started = time.monotonic()

    # 2. The cluster and the actor groups: learner, rollout and reward starting together, then judges (if used).
    started_ray = init_ray(cfg, list(judge_models))
    try:
        learners, rollout_workers, reward_workers = create_training_actors(cfg, model_path, tasks)
        # Named actors that the rewards find by name; held here, since Ray frees an actor without handles.
        judges = create_judges(cfg, judge_models) if judge_models else []  # noqa: F841
        teachers = create_teachers(cfg, teacher_path)  # on-policy distillation (rl/teacher.py)
        restarts = fault.Restarts(cfg.cluster.max_actor_restarts)  # dead rollout/reward actors: retried
        workers = RoundWorkers(rollout_workers, reward_workers, restarts)
        sync = connect_sync(cfg, learners, rollout_workers, restarts)  # rollout.sync_method: collective or object store
        weights = PublishedWeights(0)  # the workers start with the model's own weights
        if resume_from is not None:
            ray.get([lrn.load.remote(str(resume_from)) for lrn in learners])
            weights = sync.publish(start_step)
            sync.load(weights)
            log.info("resumed from %s at step %d", resume_from, start_step)
        logger = RunLogger(out, to_dict(cfg), mode=cfg.logging.wandb_mode, project=cfg.logging.wandb_project,
                           run_name=cfg.run.name, total_steps=cfg.run.steps, start_step=start_step,
                           progress_bar=cfg.logging.progress_bar, run_id=run_id)

        # 3. The step loop. Batches come from a background thread, at most rollout.off_policy_steps
        # updates behind the learner (0: synchronous); see rl/pipeline.py.
        ahead = RolloutsAhead(lambda step, held: step_batch(step, cfg, mix, tokenizer, workers, held, sync.load),
                              sync.load, start_step, cfg.run.steps, cfg.rollout.off_policy_steps, weights)
        try:
            for step in range(start_step, cfg.run.steps):
                with fault.learner_guard(out, step, learners):  # a dead learner ends the run at its last checkpoint
                    metrics = grpo_step(step, ahead.take(step), cfg, mix, tokenizer, learners, workers, out,
                                        teachers)
                    weights = sync.publish(step + 1)
                    ahead.publish(weights)
                done = step + 1
                metrics.update(checkpoint_and_evaluate(done, cfg, out, learners, logger.run_id, tasks, tokenizer,
                                                       workers, sync, weights))
                logger.log(done, metrics)
                logger.warn_if_idle(done, metrics)
        finally:
            ahead.close()
        logger.close()
    finally:
        if started_ray:
            ray.shutdown()
    print(closing_summary(out, time.monotonic() - started), flush=True)
    return out


def closing_summary(out: Path, wall_s: float) -> str:
    """Write report.png/html and say what the run did and where to look (a failed report is only a warning)."""
    report = None
    try:
        report, _ = write_report(out)
    except Exception as exc:  # noqa: BLE001 - the run is done and saved; a plotting problem must not fail it
        log.warning("could not write the report (rl report %s retries): %s", out, exc)
    latest = checkpoint.latest_checkpoint(out)
    return summary(out, wall_s, latest[0] if latest else None, report)


def grpo_step(step: int, batch: ScoredRollouts, cfg: TrainConfig, mix: TaskMix, tokenizer: Any, learners: list,
              workers: RoundWorkers, out: Path, teachers: list | None = None) -> dict[str, float]:
    """Advantages (per token with a distillation teacher), one round of GRPO updates on the learners,
    rollouts to disk, and the step's metrics."""
    import ray

    timer = time.perf_counter()
    rollouts, completions, scored = batch.rollouts, batch.completions, batch.scored
    rewards = torch.tensor([s.reward for s in scored], dtype=torch.float32)
    advantages = grpo.group_advantages(rewards, cfg.rollout.group_size, normalize_std=cfg.grpo.normalize_std,
                                       eps=cfg.grpo.eps)
    train_batch = collate(rollouts, advantages, pad_id=tokenizer.pad_token_id or 0)
    distill_metrics = {}
    if teachers:  # the teacher's log-prob of every sampled token: per-token reverse-KL advantages
        shares = train_batch.split(len(teachers))
        teacher_lp = torch.cat(ray.get([t.logprobs.remote(share) for t, share in zip(teachers, shares)]))
        train_batch.advantages, distill_metrics = grpo.distill_advantages(
            advantages, train_batch.behavior_logprobs, teacher_lp, train_batch.loss_mask, cfg.distill.kl_coef,
            cfg.distill.reward_weight)
    if cfg.logging.log_rollouts:  # before training: a crash in the update keeps this batch on disk
        write_rollouts(out / "rollouts" / f"step_{step + 1:06d}.jsonl", rollouts, scored, completions, advantages)

    t0 = time.perf_counter()
    parts = train_batch.split(len(learners))
    rank_metrics = ray.get([lrn.train.remote(part) for lrn, part in zip(learners, parts)])
    t_train = time.perf_counter() - t0

    generated = sum(sum(r.loss_mask) for r in rollouts)
    metrics = {k: sum(m[k] for m in rank_metrics) / len(rank_metrics) for k in rank_metrics[0]}
    success = {t.name: (t.primary_reward, t.success_threshold) for t in mix.tasks}
    metrics.update(rollout_metrics(rollouts, scored, completions, rewards, cfg.rollout.group_size, success))
    metrics.update(stats_in_pool(workers.reward))
    metrics.update(workers.restarts.metrics())
    metrics.update(batch.extra)
    metrics.update(distill_metrics)
    step_s = time.perf_counter() - timer + batch.t_wait  # waiting for the batch is part of the step
    metrics.update({
        "time/generate": batch.t_generate, "time/reward": batch.t_reward, "time/train": t_train,
        "time/sync": batch.t_sync, "time/wait_rollout": batch.t_wait, "time/step": step_s,
        "rollout/staleness": float(step - batch.weights_version), "perf/gen_tokens": float(generated),
        "perf/gen_tokens_per_s": generated / max(batch.t_generate, 1e-9),
        "perf/train_tokens": float(train_batch.attention_mask.sum()),  # prompt + response tokens the learner ran
        "perf/samples_per_s": len(rollouts) / max(step_s, 1e-9),
    })
    return metrics


def checkpoint_and_evaluate(done: int, cfg: TrainConfig, out: Path, learners: list, run_id: str | None,
                            tasks: list[Task], tokenizer: Any, workers: RoundWorkers,
                            sync: ObjectStoreSync | CollectiveSync,
                            weights: PublishedWeights) -> dict[str, float]:
    """After `done` steps: a checkpoint every checkpoint.every steps and at the end, an evaluation every
    run.eval_every steps and at the end (with the newest weights: the rollout workers may hold older
    ones, after the last update or under off-policy lag)."""
    metrics = {}
    t0 = time.perf_counter()
    if done == cfg.run.steps or (cfg.checkpoint.every and done % cfg.checkpoint.every == 0):
        with fault.learner_guard(out, done - 1, learners):
            save_checkpoint(out, done, learners, cfg, run_id)
    metrics["time/checkpoint"] = time.perf_counter() - t0
    if cfg.run.eval_every and (done % cfg.run.eval_every == 0 or done == cfg.run.steps):
        t0 = time.perf_counter()
        sync.load(weights)
        resync = lambda worker: sync.load(weights, workers=[worker])  # noqa: E731

        def generate_and_score(requests, rows, prefixes):
            result = run_round(requests, rows, prefixes, workers, version=weights.version, resync=resync)
            return result.rollouts, result.scored

        metrics.update(evaluate(done, tasks, cfg, tokenizer, generate_and_score))
        metrics["time/eval"] = time.perf_counter() - t0
    return metrics
