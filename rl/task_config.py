"""The `data` section of a training config: the task mix (a leaf module, read by envs/tasks.py).

    data:
      tasks:
        - {name: arithmetic, weight: 1.0, size: 1000}
        - {name: gsm8k, source: data/gsm8k.jsonl, rewards: [{name: math}]}
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rewards.spec import RewardSpec  # a task's reward entries: {name, weight, kwargs, alias}
from rl.config_io import ConfigError


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


def validate_data(data: DataConfig) -> None:
    """The task mix's checks; each error names the task and what to set."""
    if not data.tasks:
        raise ConfigError("data.tasks is empty: list at least one task (see `rl tasks`)")
    names = [t.name for t in data.tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"data.tasks has duplicate names {names}; give each task a unique `name`")
    for i, task in enumerate(data.tasks):
        if task.weight < 0 or not 0 <= task.thinking_ratio <= 1:
            raise ConfigError(f"data.tasks[{i}] ({task.name}): weight must be >= 0 and thinking_ratio in [0, 1]")
        steps = [s for s, _ in task.weight_schedule]
        if steps != sorted(set(steps)) or any(w < 0 for _, w in task.weight_schedule):
            raise ConfigError(f"data.tasks[{i}] ({task.name}).weight_schedule={task.weight_schedule}: give "
                              "[step, weight] points with increasing steps and weights >= 0")
    # The mix's weights are piecewise linear and >= 0, so they can only all be 0 somewhere if they are
    # all 0 at one of the schedule points (or everywhere, without schedules).
    points = sorted({s for t in data.tasks for s, _ in t.weight_schedule} | {0})
    for step in points:
        if sum(t.weight_at(step) for t in data.tasks) <= 0:
            raise ConfigError(f"data.tasks: all weights are 0 at step {step}; give at least one task a positive "
                              "weight (or weight_schedule point) there")
    if data.dynamic_sampling_rounds < 0:
        raise ConfigError(f"data.dynamic_sampling_rounds must be >= 0, got {data.dynamic_sampling_rounds}")
