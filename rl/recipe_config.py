"""`rl recipe`'s config: one YAML with a section per stage of the Qwen3 post-training recipe (rl/recipe.py).

Each stage section names the config of the command it runs (`config`: a GRPO config for the RL stages,
an SFT config for the SFT steps) and `overrides` applied on top, as `section.field: value` pairs. The
recipe sets each stage's `model.path` (the previous stage's final checkpoint), `run.output_dir` (a
folder under the recipe's) and `run.seed` itself. configs/recipe_tiny.yaml is the embedded default.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rl.config_io import ConfigError, load

STAGES = ("cold_start", "reasoning_rl", "fusion", "general_rl", "distill")
"""The recipe's stages in the order they run (the Qwen3 report's Figure 1, then strong-to-weak distillation)."""


@dataclass
class EvalSuite:
    """The `eval` section: the suite run on the starting model and after every stage (rl/recipe_eval.py)."""

    config: str = "configs/recipe_eval_tiny.yaml"
    """A GRPO config: its tasks' eval splits are evaluated with its rollout settings and thinking switch."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """`section.field: value` overrides of `config`."""
    seed: int = 1000
    """Seed of the evaluated rows and samples. Not the stages' seed: a procedural task draws its rows from
    one stream per seed, so with the training seed its eval rows would be other configs' training rows."""
    prompts: int = 16
    """Eval prompts per task (from each task's eval split)."""
    samples: int = 4
    """Samples per prompt: accuracy is pass@1 over them."""
    dialogs: int = 16
    """ThinkFollow dialogs."""
    turns: int = 2
    """User turns per ThinkFollow dialog."""
    budgets: list[int] = field(default_factory=lambda: [0, 16, 32])
    """Thinking budgets (tokens) of the accuracy-vs-budget points, on the eval config's first task."""
    answer_tokens: int = 32
    """Tokens left for the answer after a budget's stop text."""


@dataclass
class ColdStart:
    """Stage 1, cold start: SFT on scripted agent episodes (tool calls) and worked arithmetic chats."""

    config: str = "configs/sft_tiny.yaml"
    """The SFT config (`rl sft`)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """`section.field: value` overrides of `config`."""
    agent_config: str = "configs/agent_tiny.yaml"
    """A GRPO config whose agent tasks are played by the scripted policies (`rl build-agent-data`)."""
    agent_episodes: int = 64
    """Train rows played per agent task (successful episodes are kept)."""
    arithmetic_rows: int = 128
    """Procedural mixed-mode arithmetic chats added (`rl build-fusion-data --arithmetic`); 0: none."""


@dataclass
class ReasoningRL:
    """Stage 2, reasoning RL: `rl filter` keeps the queries the model solves sometimes, then GRPO on them."""

    config: str = "configs/tiny.yaml"
    """The GRPO config; its first task is filtered and replaced by the kept rows."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """`section.field: value` overrides of `config`."""
    filter_k: int = 4
    """Samples per query when filtering."""
    filter_band: list[float] = field(default_factory=lambda: [0.1, 0.9])
    """Keep a query whose pass rate lies in [low, high]."""
    filter_queries: int = 64
    """Train rows filtered (the first N)."""


@dataclass
class Fusion:
    """Stage 3, thinking-mode fusion: SFT on mixed-mode chats built by rejection sampling from the model."""

    config: str = "configs/sft_tiny.yaml"
    """The SFT config (`rl sft`)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """`section.field: value` overrides of `config`."""
    data_config: str = "configs/thinking_tiny.yaml"
    """The GRPO config `rl build-fusion-data` samples with (its tasks, rewards, thinking ratio)."""
    prompts: int = 64
    """Prompts rolled out for rejection sampling."""
    threshold: float = 1.0
    """Keep a thinking sample whose reward is >= this."""
    arithmetic_rows: int = 64
    """Procedural mixed-mode arithmetic chats added to the sampled ones; 0: none."""


@dataclass
class GeneralRL:
    """Stage 4, general RL: GRPO over many tasks with the mode-following rewards, soft switch."""

    config: str = "configs/recipe_general_tiny.yaml"
    """The GRPO config."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """`section.field: value` overrides of `config`."""


@dataclass
class Distill:
    """Stage 5, strong-to-weak distillation: off-policy (SFT on the teacher's responses) then on-policy
    (`rl distill`: the student samples, the teacher scores every token)."""

    config: str = "configs/distill_tiny.yaml"
    """The on-policy distillation config (`rl distill`)."""
    overrides: dict[str, Any] = field(default_factory=dict)
    """`section.field: value` overrides of `config`."""
    teacher: str = "general_rl"
    """A stage name (its final model) or a model path / checkpoint folder."""
    student: str | None = None
    """The student's starting model; None: the recipe's `model` (the weak model the teacher started from)."""
    sft_config: str = "configs/sft_tiny.yaml"
    """The off-policy SFT config."""
    sft_overrides: dict[str, Any] = field(default_factory=dict)
    """`section.field: value` overrides of `sft_config`."""
    data_config: str = "configs/distill_tiny.yaml"
    """The GRPO config the teacher's responses are sampled with (`rl build-fusion-data`: the best-scored
    well-formed response per prompt, in the prompt's mode)."""
    prompts: int = 64
    """Prompts the teacher answers for the off-policy data; 0: skip off-policy distillation."""
    min_reward: float = 0.0
    """A teacher response is kept when its reward reaches this. 0.0 keeps the teacher's best response to
    every prompt, right or not, as the report's off-policy distillation does (the student learns the
    teacher's format and behaviour in both modes); 1.0 keeps correct answers only."""


@dataclass
class RecipeConfig:
    name: str = "recipe"
    """Run name."""
    output_dir: str = "runs/${name}"
    """Recipe folder: one sub-folder per stage, recipe.json, recipe.md and recipe.png."""
    seed: int = 0
    """Seed of every stage."""
    model: str = "packaged:smollm2-135m-instruct"
    """The starting model (path, hub name, or packaged:NAME)."""
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    """Stages to run, in recipe order (a subset skips the others; each starts from the last one run)."""
    eval: EvalSuite = field(default_factory=EvalSuite)
    cold_start: ColdStart = field(default_factory=ColdStart)
    reasoning_rl: ReasoningRL = field(default_factory=ReasoningRL)
    fusion: Fusion = field(default_factory=Fusion)
    general_rl: GeneralRL = field(default_factory=GeneralRL)
    distill: Distill = field(default_factory=Distill)
    table: list[str] = field(default_factory=lambda: ["arithmetic/accuracy", "think_follow/no_think", "tool/success"])
    """Metrics shown in recipe.md and recipe.png (every metric is in recipe.json)."""

    def __post_init__(self) -> None:
        unknown = [s for s in self.stages if s not in STAGES]
        if unknown or not self.stages:
            raise ConfigError(f"stages: {unknown or 'empty'}; choose from {list(STAGES)}")
        if list(self.stages) != [s for s in STAGES if s in self.stages]:
            raise ConfigError(f"stages {self.stages} are out of order; the recipe runs {list(STAGES)}")
        if len(self.reasoning_rl.filter_band) != 2:
            raise ConfigError("reasoning_rl.filter_band: give [low, high]")
        self.output_dir = self.output_dir.replace("${name}", self.name)

    @property
    def out(self) -> Path:
        return Path(self.output_dir)


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> RecipeConfig:
    return load(RecipeConfig, path, overrides)
