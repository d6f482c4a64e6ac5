"""Checks of a loaded config: the ranges of every number, and the cross-field rules of each command.

The dataclasses in rl/config.py call these from `__post_init__`, so a config that loads is a config that
passed them; each error names the dotted field and says what to set.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from rl.algo_config import validate_grpo
from rl.config_io import ConfigError
from rl.task_config import validate_data

if TYPE_CHECKING:
    from rl.config import BaseConfig, RolloutConfig, SFTConfig, TrainConfig


def check_numbers(section: Any, prefix: str = "") -> None:
    """Every number of the config is finite and >= 0 (none has a meaning below zero); a named error.

    The field-specific ranges (a probability in (0, 1], a count >= 1) are checked where they matter.
    """
    for f in dataclasses.fields(section):
        value, name = getattr(section, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_numbers(value, name + ".")
            continue
        numbers = value if isinstance(value, tuple) else (value,)
        for number in numbers:
            if isinstance(number, (int, float)) and not isinstance(number, bool) and not (
                    math.isfinite(number) and number >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {value}")


def validate_common(cfg: BaseConfig) -> None:
    """Checks of the sections every command reads."""
    check_numbers(cfg)
    lrn = cfg.learner
    if not all(0 <= beta < 1 for beta in lrn.betas):
        raise ConfigError(f"learner.betas are AdamW's decay rates, each in [0, 1); got {lrn.betas}")
    if cfg.cluster.max_actor_restarts < 0:
        raise ConfigError(f"cluster.max_actor_restarts must be >= 0 (0: a dead worker ends the run), got "
                          f"{cfg.cluster.max_actor_restarts}")
    for name, value in {"learner.num_workers": lrn.num_workers, "learner.micro_batch_size": lrn.micro_batch_size,
                        "learner.mini_batches": lrn.mini_batches, "learner.epochs": lrn.epochs}.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if lrn.max_tokens_per_micro_batch < 0:
        raise ConfigError(f"learner.max_tokens_per_micro_batch must be >= 0 (0: off), got {lrn.max_tokens_per_micro_batch}")
    if not (math.isfinite(lrn.lr) and lrn.lr > 0) or lrn.weight_decay < 0 or lrn.grad_clip < 0 or lrn.warmup_steps < 0:
        raise ConfigError(f"learner.lr must be a positive number (got {lrn.lr}); weight_decay, grad_clip and "
                          "warmup_steps must be >= 0")
    if cfg.model.lora_rank < 0 or (cfg.model.lora_rank and not cfg.model.lora_alpha > 0):
        raise ConfigError("model.lora_rank must be >= 0 (0: full fine-tuning) and model.lora_alpha > 0")
    if cfg.model.lora_rank and lrn.zero_stage == 3:
        raise ConfigError("model.lora_rank with learner.zero_stage=3 is not supported (the adapters are small: "
                          "use zero_stage 0-2, which keep the frozen base weights whole on every rank)")


def validate_sft(cfg: SFTConfig) -> None:
    s, lrn = cfg.sft, cfg.learner
    for name, value in {"sft.epochs": s.epochs, "sft.batch_size": s.batch_size}.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if s.max_steps < 0 or s.max_seq_len < 2:
        raise ConfigError("sft.max_steps must be >= 0 and sft.max_seq_len >= 2")
    if lrn.mini_batches != 1 or lrn.epochs != 1:
        raise ConfigError("learner.mini_batches and learner.epochs are GRPO settings (updates per rollout batch); "
                          "SFT takes one optimizer step per batch: set sft.batch_size and sft.epochs instead")
    if s.batch_size % lrn.num_workers:
        raise ConfigError(f"sft.batch_size={s.batch_size} does not split over learner.num_workers={lrn.num_workers} "
                          "ranks; make it a multiple of the number of ranks")


def validate_tensor_parallel(r: RolloutConfig) -> None:
    """A tensor-parallel engine holds whole GPUs, one per shard; one GPU or a share of it (colocated with
    the learner) serves an engine without TP. (The model's head counts are checked against the model at
    start-up: rl/rollout/engines.py check_tensor_parallel.)"""
    tp, gpus = r.tensor_parallel_size, r.gpus_per_worker
    if gpus and gpus != tp and not (tp == 1 and gpus < 1):
        raise ConfigError(f"rollout.gpus_per_worker={gpus:g} does not match rollout.tensor_parallel_size={tp}: a vLLM "
                          f"engine shards the model over one GPU per TP rank; set rollout.gpus_per_worker={tp} (0 on "
                          "CPU), or tensor_parallel_size to the GPUs you want per engine")
    if tp > 1 and r.backend != "vllm":
        raise ConfigError(f"rollout.tensor_parallel_size={tp} needs rollout.backend=vllm (the transformers backend "
                          "runs one process); set rollout.tensor_parallel_size=1 or rollout.backend=vllm")


def validate_distill(cfg: TrainConfig) -> None:
    d = cfg.distill
    if d.teacher is None:
        return
    if d.kl_coef < 0 or d.reward_weight < 0 or d.micro_batch_size < 1 or (d.kl_coef == 0 and d.reward_weight == 0):
        raise ConfigError(f"distill.kl_coef={d.kl_coef} and distill.reward_weight={d.reward_weight} must be >= 0, "
                          f"not both 0, and distill.micro_batch_size={d.micro_batch_size} >= 1")
    if cfg.samples_per_step % d.num_workers:
        raise ConfigError(f"{cfg.samples_per_step} samples per step do not split into distill.num_workers="
                          f"{d.num_workers} equal shares; change distill.num_workers or rollout.prompts_per_step")
    if cfg.grpo.importance_level == "sequence":
        raise ConfigError("distill.teacher gives every token its own advantage, which a sequence-level ratio "
                          "(grpo.importance_level=sequence, GSPO) cannot weigh; use grpo.importance_level=token")


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks; each error says what is wrong and what to set."""
    r, lrn = cfg.rollout, cfg.learner
    positive = {"run.steps": cfg.run.steps, "rollout.group_size": r.group_size,
                "rollout.prompts_per_step": r.prompts_per_step, "rollout.max_new_tokens": r.max_new_tokens,
                "rollout.num_workers": r.num_workers, "rollout.tensor_parallel_size": r.tensor_parallel_size,
                "reward.num_workers": cfg.reward.num_workers,
                "judge.num_workers": cfg.judge.num_workers, "reward_model.num_workers": cfg.reward_model.num_workers,
                "judge.max_concurrency": cfg.judge.max_concurrency,
                "reward_model.max_concurrency": cfg.reward_model.max_concurrency}
    for name, value in positive.items():
        if value < 1:
            raise ConfigError(f"{name} must be >= 1, got {value}")
    if r.group_size < 2:
        raise ConfigError(f"rollout.group_size={r.group_size}: GRPO needs >= 2 samples per prompt to "
                          "compare them; set rollout.group_size to 2 or more")
    if cfg.reward.timeout_s <= 0 or cfg.reward.model_timeout_s <= 0:
        raise ConfigError("reward.timeout_s and reward.model_timeout_s must be > 0 seconds")
    if not (math.isfinite(r.temperature) and r.temperature > 0):
        raise ConfigError(f"rollout.temperature must be a number > 0 (GRPO needs sampling), got {r.temperature}")
    if not 0 < r.top_p <= 1 or not 0 < r.gpu_memory_utilization <= 1 or not r.kv_cache_gb > 0:
        raise ConfigError(f"rollout.top_p and rollout.gpu_memory_utilization are fractions in (0, 1] and "
                          f"rollout.kv_cache_gb > 0; got {r.top_p}, {r.gpu_memory_utilization}, {r.kv_cache_gb}")
    per_rank = cfg.samples_per_step / (lrn.mini_batches * lrn.num_workers)
    if per_rank < 1 or per_rank != int(per_rank):
        raise ConfigError(
            f"{cfg.samples_per_step} samples per step (prompts_per_step x group_size) do not split into "
            f"learner.mini_batches={lrn.mini_batches} x learner.num_workers={lrn.num_workers} equal parts; "
            "change rollout.prompts_per_step or learner.mini_batches")
    validate_tensor_parallel(r)
    if r.off_policy_steps < 0 or r.sync_bucket_mb <= 0:
        raise ConfigError("rollout.off_policy_steps must be >= 0 and rollout.sync_bucket_mb > 0")
    if r.off_policy_steps > 0 and cfg.grpo.tis_cap is None:
        raise ConfigError(f"rollout.off_policy_steps={r.off_policy_steps} trains on samples from older weights; "
                          "set grpo.tis_cap (e.g. 2.0) so the loss corrects for it with truncated importance "
                          "sampling, or set rollout.off_policy_steps=0")
    validate_grpo(cfg.grpo)
    validate_distill(cfg)
    validate_data(cfg.data)
    if cfg.run.eval_every < 0 or cfg.run.eval_samples < 1 or cfg.run.eval_prompts < 1:
        raise ConfigError("run.eval_every must be >= 0, run.eval_samples and run.eval_prompts >= 1")
