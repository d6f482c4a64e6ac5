"""Actor creation: the Ray cluster, and every actor group from its config section, in one way.

    started = init_ray(cfg, judge_roles=list(judge_models))
    learners, rollout_workers, reward_workers = create_training_actors(cfg, model_path, tasks)
        # DeepSpeed ranks (rl/learner.py), vLLM engines (rl/rollout/worker.py), reward processes
        # (rewards/worker.py): started together, each also on its own (create_learners, ...)
    judges = create_judges(cfg, judge_models)                   # named judge / reward-model actors

Every role's section shares `rl.config.ActorGroupConfig` (num_workers, cpus/gpus per worker, custom
resources, threads), and `create_group` turns one into a placement group with one bundle per actor
and the actors in it. Rollout and reward actors are restarted by Ray when they die (rl/fault.py);
learners are not (a dead learner ends the run at its last checkpoint).
"""
from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from envs.tasks import Task
from rl import checkpoint
from rl.console import actor_console_env, console_level
from rl.config import (ActorGroupConfig, BaseConfig, ConfigError, JudgeConfig, RewardModelConfig,
                       TrainConfig)
from rl.models import resolve_model_path

Args = tuple[tuple[Any, ...], dict[str, Any]]
"""Constructor (args, kwargs) of one actor."""


def init_ray(cfg: BaseConfig, judge_roles: list[str] | None = None) -> bool:
    """Join the cluster at cluster.address / $RAY_ADDRESS (failing at once if the run can never fit it), or
    start a local one; True when this call connected (the caller shuts Ray down at the end).
    `judge_roles` ("judge", "reward_model") are the model-reward actors the local cluster must fit too."""
    import ray

    if ray.is_initialized():
        return False
    address = cfg.cluster.address or os.environ.get("RAY_ADDRESS")
    groups = {"learner": cfg.learner}
    if isinstance(cfg, TrainConfig):
        groups |= {"rollout": cfg.rollout, "reward": cfg.reward}
        groups |= {role: judge_section(cfg, role) for role in judge_roles or []}
        if cfg.distill.teacher:
            groups["teacher"] = cfg.distill
    if address:
        ray.init(address=address, log_to_driver=True, logging_level=console_level())
        check_cluster_fits(groups, ray.cluster_resources(), address)
        return True  # ours to disconnect from at the end
    wanted = sum(g.num_workers * g.cpus_per_worker for g in groups.values())
    num_cpus = cfg.cluster.num_cpus or max(int(wanted + 0.999), os.cpu_count() or 1)
    # address="local": a new cluster of our own, even when `ray start` left one running on this machine
    # (a bare ray.init() would join that one, with its own CPU count).
    ray.init(address="local", num_cpus=num_cpus, num_gpus=cfg.cluster.num_gpus, include_dashboard=False,
             log_to_driver=True, logging_level=console_level())
    return True


def check_cluster_fits(groups: dict[str, ActorGroupConfig], total: dict[str, float], address: str) -> None:
    """Fail at once, naming what is missing, when the actors can never fit the cluster's total resources
    (placement would otherwise wait for nodes that will not come, then fail minutes later)."""
    wanted: dict[str, float] = {}
    for group in groups.values():
        for name, amount in bundle_of(group).items():
            wanted[name] = wanted.get(name, 0.0) + amount * group.num_workers
    short = {name: (amount, total.get(name, 0.0)) for name, amount in wanted.items()
             if amount > total.get(name, 0.0) + 1e-9}
    if short:
        asked = "; ".join(f"{role}: {g.num_workers} x {g.cpus_per_worker:g} CPU" + (f" + {g.gpus_per_worker:g} GPU"
                          if g.gpus_per_worker else "") for role, g in groups.items())
        missing = ", ".join(f"{name} {need:g} wanted, {have:g} in all" for name, (need, have) in short.items())
        raise ConfigError(f"the cluster at {address} can never fit this run: {missing} ({asked}). Lower the "
                          "sections' cpus_per_worker / gpus_per_worker / num_workers (fractions are fine: Ray's "
                          "CPU counts are logical), or add nodes")


def actor_env(threads: int) -> dict[str, str]:
    """Environment for every actor. Ray sets OMP_NUM_THREADS to the logical CPU request (often 1);
    phases do not overlap in a synchronous step, so each actor may use the node's cores."""
    env = {"OMP_NUM_THREADS": str(threads or os.cpu_count() or 1), "TOKENIZERS_PARALLELISM": "false",
           "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    if not torch.cuda.is_available():
        env["DS_ACCELERATOR"] = "cpu"
    return env


def create_group(role: str, group: ActorGroupConfig, cfg: BaseConfig, cls: type, args_of: Callable[[int], Args], *,
                 restartable: bool = False, names: Callable[[int], str] | None = None,
                 namespace: str | None = None, max_concurrency: int | None = None) -> list:
    """`group.num_workers` actors of `cls` in one placement group (one bundle each); actor i is built
    with `args_of(i)`. `restartable`: Ray restarts a dead actor up to cluster.max_actor_restarts times.
    `names`: actor i is the named actor `names(i)` in `namespace`, taking `max_concurrency` calls."""
    import ray
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement(role, group, cfg.cluster.placement_strategy)
    actors = []
    for i in range(group.num_workers):
        options: dict[str, Any] = {
            "num_cpus": group.cpus_per_worker, "num_gpus": group.gpus_per_worker,
            "runtime_env": {"env_vars": actor_env(group.threads) | actor_console_env()},
            "scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)}
        if restartable:
            options["max_restarts"] = cfg.cluster.max_actor_restarts  # in-flight work: rl/fault.py
        if names is not None:
            options |= {"name": names(i), "namespace": namespace, "max_concurrency": max_concurrency}
        args, kwargs = args_of(i)
        actors.append(ray.remote(cls).options(**options).remote(*args, **kwargs))
    return actors


def bundle_of(group: ActorGroupConfig) -> dict[str, float]:
    """What one actor of `group` asks Ray for (its placement-group bundle)."""
    return {"CPU": group.cpus_per_worker, **({"GPU": group.gpus_per_worker} if group.gpus_per_worker else {}),
            **group.resources}


def placement(role: str, group: ActorGroupConfig, strategy: str) -> Any:
    """A placement group with one bundle per actor of `role`; fails clearly if it cannot be placed."""
    import ray
    from ray.util.placement_group import placement_group

    bundle = bundle_of(group)
    pg = placement_group([dict(bundle) for _ in range(group.num_workers)], strategy=strategy, name=f"rl-{role}")
    ready, _ = ray.wait([pg.ready()], timeout=float(os.environ.get("RL_PLACEMENT_TIMEOUT_S", 120)))
    if not ready:
        raise RuntimeError(f"cannot place {group.num_workers} x {bundle} for the {role} actors; the cluster has "
                           f"{ray.available_resources()} free. Lower {role}.*_per_worker or add nodes.")
    return pg


# ---------------------------------------------------------------------------------------- the roles
def create_learners(cfg: BaseConfig, model_path: str) -> list:
    """The DeepSpeed ranks, joined into one torch.distributed world."""
    import ray

    learners = learner_group(cfg, model_path)
    ray.get(setup_learners(learners))
    return learners


def learner_group(cfg: BaseConfig, model_path: str) -> list:
    from rl.learner import Learner

    n = cfg.learner.num_workers
    return create_group("learner", cfg.learner, cfg, Learner, lambda i: ((cfg, model_path, i, n), {}))


def setup_learners(learners: list) -> list:
    """Start every rank's DeepSpeed set-up (one world at rank 0's address); returns the pending calls."""
    import ray

    addr, port = ray.get(learners[0].rendezvous.remote())
    return [lrn.setup.remote(addr, port) for lrn in learners]


def create_training_actors(cfg: TrainConfig, model_path: str, tasks: list[Task]) -> tuple[list, list, list]:
    """Learners, rollout workers and reward workers for `rl train`, started together: DeepSpeed's set-up,
    the vLLM engines and the reward processes each start while the others do (one after the other they
    cost the sum, ~10 s more per run on 2 cores). Every start-up error surfaces here, before step 1."""
    import ray

    learners = learner_group(cfg, model_path)
    rollout_workers, reward_workers = rollout_group(cfg, model_path), reward_group(cfg, tasks)
    ray.get(setup_learners(learners) + [w.pid.remote() for w in rollout_workers]
            + [w.stats.remote() for w in reward_workers])
    return learners, rollout_workers, reward_workers


def teacher_model_path(cfg: TrainConfig, student_path: str) -> str | None:
    """distill.teacher as a local folder (or hub id), checked before any actor starts: it exists and has
    the student's vocabulary. None without distillation."""
    if not cfg.distill.teacher:
        return None
    from transformers import AutoConfig

    try:
        teacher_path = resolve_model_path(cfg.distill.teacher)
    except (FileNotFoundError, ValueError) as exc:
        raise ConfigError(f"distill.teacher {cfg.distill.teacher}: {exc}. Give the teacher's model or checkpoint "
                          "folder (e.g. the run folder's checkpoints/step_N of a stronger run)") from None
    vocab, teacher_vocab = (AutoConfig.from_pretrained(p).vocab_size for p in (student_path, teacher_path))
    if teacher_vocab != vocab:
        raise ConfigError(f"distill.teacher {cfg.distill.teacher} has a vocabulary of {teacher_vocab} tokens and the "
                          f"student {vocab}: the teacher scores the student's token ids, so it needs the same "
                          "tokenizer (a model of the same family)")
    return teacher_path


def create_teachers(cfg: TrainConfig, teacher_path: str | None) -> list:
    """The distillation teachers (rl/teacher.py; distill.num_workers replicas, each scoring its share of
    a batch); [] without distillation."""
    if teacher_path is None:
        return []
    import ray

    from rl.teacher import Teacher

    teachers = create_group("teacher", cfg.distill, cfg, Teacher, lambda i: ((teacher_path,), {
        "dtype": cfg.model.dtype, "threads": cfg.distill.threads, "micro_batch_size": cfg.distill.micro_batch_size,
        "chunk_tokens": cfg.learner.logits_chunk_tokens}))
    ray.get([t.ready.remote() for t in teachers])
    return teachers


def rollout_worker_kwargs(cfg: TrainConfig, seed: int, max_model_len: int | None = None) -> dict[str, Any]:
    """`RolloutWorker`'s keyword arguments from the config (the one place the engine settings are read;
    `max_model_len`: override the default room of prompt + response)."""
    rc = cfg.rollout
    engine = {"dtype": rc.dtype, "gpu_memory_utilization": rc.gpu_memory_utilization, "kv_cache_gb": rc.kv_cache_gb,
              "enforce_eager": rc.enforce_eager, "tensor_parallel_size": rc.tensor_parallel_size,
              "max_model_len": max_model_len or rc.max_prompt_tokens + rc.max_new_tokens + 256}
    return {"temperature": rc.temperature, "top_p": rc.top_p, "seed": seed, "threads": rc.threads,
            "engine_kwargs": engine}


def create_rollout_workers(cfg: TrainConfig, model_path: str) -> list:
    import ray

    workers = rollout_group(cfg, model_path)
    ray.get([w.pid.remote() for w in workers])  # surface start-up errors here, not mid-step
    return workers


def rollout_group(cfg: TrainConfig, model_path: str) -> list:
    from rl.rollout.worker import RolloutWorker

    return create_group("rollout", cfg.rollout, cfg, RolloutWorker, restartable=True, args_of=lambda i: (
        (model_path, cfg.rollout.backend), rollout_worker_kwargs(cfg, seed=cfg.run.seed + i)))


def create_reward_workers(cfg: TrainConfig, tasks: list[Task]) -> list:
    import ray

    workers = reward_group(cfg, tasks)
    ray.get([w.stats.remote() for w in workers])
    return workers


def reward_group(cfg: TrainConfig, tasks: list[Task]) -> list:
    from rewards.worker import RewardWorker

    rw = cfg.reward
    kwargs = {"timeout_s": rw.timeout_s, "num_procs": rw.procs_per_worker, "model_timeout_s": rw.model_timeout_s}
    specs = {t.name: t.rewards for t in tasks}
    return create_group("reward", rw, cfg, RewardWorker, lambda i: ((specs,), kwargs), restartable=True)


# ------------------------------------------------------------------------- judge and reward-model actors
JUDGE_ROLES = {"judge": "judge", "reward_model": "model"}
"""Built-in model-based reward -> its keyword naming the actor to call (rewards/judge.py, reward_model.py)."""


def judge_section(cfg: TrainConfig, role: str) -> JudgeConfig | RewardModelConfig:
    return {"judge": cfg.judge, "reward_model": cfg.reward_model}[role]


def _judge_worker(role: str) -> tuple[type, str]:
    """The worker class and actor name of a judge role."""
    if role == "judge":
        from rewards.judge import JUDGE_ACTOR, JudgeWorker

        return JudgeWorker, JUDGE_ACTOR
    from rewards.reward_model import REWARD_MODEL_ACTOR, RewardModelWorker

    return RewardModelWorker, REWARD_MODEL_ACTOR


def plan_judges(cfg: TrainConfig, tasks: list[Task]) -> dict[str, str]:
    """{role: resolved model} for the judge / reward-model actors this run needs, checked before any
    actor starts. A role is needed when a task lists its built-in reward calling the default actor
    (not a URL or folder of its own), or when its section sets `force`."""
    models = {}
    for role, kwarg in JUDGE_ROLES.items():
        section, (cls, actor) = judge_section(cfg, role), _judge_worker(role)
        users = sorted({t.name for t in tasks for s in t.rewards
                        if s.name == role and s.kwargs.get(kwarg, actor) == actor})
        if not users and not section.force:
            continue
        if section.model is None:
            why = f"task(s) {users} use the {role!r} reward" if users else f"{role}.force is true"
            url = ", or an http(s):// URL of an OpenAI-compatible server" if role == "judge" else ""
            raise ConfigError(f"{why}, which needs the {actor!r} actor, but {role}.model is null; "
                              f"set {role}.model to a model folder or packaged:<name> (see `rl models`){url}")
        try:
            inspect.signature(cls).bind("model", **judge_kwargs(cfg, role))
            if role == "judge":
                from rewards.judge import JudgeOptions

                JudgeOptions(**judge_kwargs(cfg, role))
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{role}.options: {exc}") from None
        url = section.model.startswith(("http://", "https://"))
        models[role] = section.model if url else resolve_model_path(section.model)
    return models


def judge_kwargs(cfg: TrainConfig, role: str) -> dict[str, Any]:
    """Constructor keywords of the role's worker class (JudgeWorker / RewardModelWorker)."""
    if role == "judge":
        jc = cfg.judge
        return {"mode": jc.mode, "micro_batch_size": jc.micro_batch_size, "backend": jc.backend,
                "tensor_parallel_size": jc.tensor_parallel_size, **jc.options}
    rc = cfg.reward_model
    return {"micro_batch_size": rc.micro_batch_size, "max_length": rc.max_length, **rc.options}


def create_judges(cfg: TrainConfig, models: dict[str, str]) -> list:
    """The judge / reward-model actors, named as the rewards look them up (rewards/serving.py): "rl-judge"
    and "rl-reward-model" (replicas "-1", "-2", ...) in `RAY_NAMESPACE`, each taking up to
    `max_concurrency` calls at once so that its batcher can merge them."""
    import ray

    from rewards.serving import RAY_NAMESPACE, replica_name

    for role in models:
        for i in range(judge_section(cfg, role).num_workers):
            _check_name_free(replica_name(_judge_worker(role)[1], i), RAY_NAMESPACE)
    actors = []
    for role, model in models.items():
        section, (cls, name) = judge_section(cfg, role), _judge_worker(role)
        actors += create_group(role, section, cfg, cls, lambda i: ((model,), judge_kwargs(cfg, role)),
                               names=lambda i: replica_name(name, i), namespace=RAY_NAMESPACE,
                               max_concurrency=section.max_concurrency)
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


def save_checkpoint(out: Path, step: int, learners: list, cfg: BaseConfig, run_id: str | None) -> None:
    """Every learner rank writes its part into a staging folder, published when complete (rl/checkpoint.py)."""
    import ray

    staging = checkpoint.staging_dir(out, step)
    ray.get([lrn.save.remote(str(staging), {"step": step}) for lrn in learners])
    checkpoint.finalize(out, staging, step, {"wandb_run_id": run_id, "seed": cfg.run.seed}, cfg.checkpoint.keep)
