"""Task categories: a name + data source + prompt format + rewards with weights + sampling weight.

A built-in task is a `TaskSpec` in the `BUILTIN_TASKS` table (name -> import string, imported only
when used). A user task is declared in YAML, either pointing `source` at a data file / hub dataset
(with `rewards:` listed) or at their own `TaskSpec` by import string (`my_pkg.tasks:SPEC`).

Rows are plain dicts. Each carries `task` and either `prompt` (the user message text) or `messages`
(a chat), plus whatever fields its rewards need (`answer`, `tests`, ...). Rows are checked when loaded:
a row missing a field its rewards require fails with the file and row number.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from rewards.base import required_fields
from rewards.registry import get_reward, load_object
from rewards.runner import RewardSpec
from rl.config import ConfigError, TaskConfig

Row = dict[str, Any]
Generator = Callable[[int, int, dict[str, Any]], list[Row]]
"""generate(size, seed, options) -> rows; must be deterministic in (size, seed, options)."""


@dataclass
class TaskSpec:
    """What a built-in (or user) task category provides by default."""

    name: str
    description: str
    generate: Generator
    rewards: list[RewardSpec]
    system_prompt: str | None = None
    source: str = "procedural"
    """Where the data comes from, for `rl tasks` (e.g. "reasoning-gym:knights_knaves")."""


BUILTIN_TASKS: dict[str, str] = {
    "arithmetic": "envs.builtin.arithmetic:ARITHMETIC",
}


@dataclass
class Task:
    """A loaded task: its config, rows split into train/eval, and resolved prompt settings."""

    config: TaskConfig
    train: list[Row]
    eval: list[Row]
    rewards: list[RewardSpec]
    system_prompt: str | None = None
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name

    def messages(self, row: Row, thinking: bool) -> list[dict[str, Any]]:
        """Chat messages for a row; mixed-mode tasks put the /think or /no_think flag on the user turn."""
        messages = [dict(m) for m in row["messages"]] if "messages" in row else [{"role": "user", "content": row["prompt"]}]
        if self.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        if 0 < self.config.thinking_ratio < 1:
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            flag = "/think" if thinking else "/no_think"
            messages[last_user]["content"] = f"{messages[last_user]['content']} {flag}"
        return messages


def get_task_spec(name: str) -> TaskSpec:
    if name in BUILTIN_TASKS:
        return load_object(BUILTIN_TASKS[name], "task")
    if ":" in name:
        spec = load_object(name, "task")
        if not isinstance(spec, TaskSpec):
            raise TypeError(f"task {name!r} must resolve to an envs.tasks.TaskSpec, got {type(spec).__name__}")
        return spec
    raise ConfigError(f"unknown task source {name!r}. Built-ins: {sorted(BUILTIN_TASKS)}; or give a data "
                      "file (.jsonl/.json/.parquet/.csv), a hub dataset name, or 'pkg.module:SPEC'")


def load_task(cfg: TaskConfig, seed: int) -> Task:
    """Build a task's rows (train + eval) and check every row against its rewards."""
    source = cfg.source or cfg.name
    if _is_file_or_hub(source):
        rows = _load_dataset_rows(source, cfg)
        rewards, system, where = cfg.rewards, cfg.system_prompt, source
        if not rewards:
            raise ConfigError(f"task {cfg.name!r} reads {source} but lists no rewards; add `rewards:` "
                              "(e.g. [{name: math}])")
    else:
        spec = get_task_spec(source)
        total = cfg.size + cfg.eval_size
        rows = spec.generate(total, seed, dict(cfg.options))
        rewards = cfg.rewards or spec.rewards
        system = cfg.system_prompt if cfg.system_prompt is not None else spec.system_prompt
        where = spec.source
    rows = [{**row, "task": cfg.name} for row in rows]
    check_rows(rows, rewards, cfg.name, where)
    # a fixed shuffle before the split, so a file sorted by difficulty still gets a fair eval split
    random.Random(f"{seed}-{cfg.name}-split").shuffle(rows)
    eval_size = min(cfg.eval_size, len(rows) // 5)
    return Task(config=cfg, train=rows[eval_size:][: cfg.size], eval=rows[:eval_size], rewards=rewards,
                system_prompt=system, source=where)


def check_rows(rows: list[Row], rewards: list[RewardSpec], task: str, where: str) -> None:
    """Fail at load time, naming the source and row, when a row lacks what the task needs."""
    if not rows:
        raise ConfigError(f"task {task!r}: {where} produced no rows")
    needed = {"prompt or messages"}
    for spec in rewards:
        needed |= set(required_fields(get_reward(spec.name, **spec.kwargs)))
    for i, row in enumerate(rows):
        if "prompt" not in row and "messages" not in row:
            raise ConfigError(f"{where}: row {i} of task {task!r} has neither `prompt` nor `messages` "
                              f"(fields: {sorted(row)}); map a column with the task's `columns` setting")
        missing = sorted(f for f in needed - {"prompt or messages"} if row.get(f) is None)
        if missing:
            raise ConfigError(f"{where}: row {i} of task {task!r} is missing field(s) {missing} that its "
                              f"rewards need (row fields: {sorted(row)}); fix the data or map a column "
                              "with `columns: {dataset_column: field}`")


def _is_file_or_hub(source: str) -> bool:
    if source in BUILTIN_TASKS or ":" in source:
        return False
    return Path(source).suffix in {".jsonl", ".json", ".parquet", ".csv"} or "/" in source


def _load_dataset_rows(source: str, cfg: TaskConfig) -> list[Row]:
    """Read a local file or hub dataset with `datasets`, rename columns, check `task` values."""
    import datasets

    path = Path(source).expanduser()
    if path.suffix in {".jsonl", ".json", ".parquet", ".csv"}:
        if not path.is_file():
            raise ConfigError(f"task {cfg.name!r}: data file {path} does not exist")
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet", ".csv": "csv"}[path.suffix]
        try:
            ds = datasets.load_dataset(kind, data_files=str(path), split="train")
        except Exception as exc:  # datasets wraps parse errors in many types; name the file
            raise ConfigError(f"task {cfg.name!r}: cannot read {path}: {exc}") from exc
    else:
        ds = datasets.load_dataset(source, split=cfg.options.get("split", "train"))
    if cfg.columns:
        missing = [c for c in cfg.columns if c not in ds.column_names]
        if missing:
            raise ConfigError(f"task {cfg.name!r}: columns {missing} not in {source} (has {ds.column_names})")
        ds = ds.rename_columns(cfg.columns)
    rows = [dict(r) for r in ds.select(range(min(len(ds), cfg.size + cfg.eval_size)))]
    for i, row in enumerate(rows):
        if row.get("task") not in (None, cfg.name):
            raise ConfigError(f"{source}: row {i} has task {row['task']!r}, but this file is declared as "
                              f"task {cfg.name!r}; fix the row or split the file per task")
    return rows
