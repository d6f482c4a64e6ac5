"""Task categories: a name + data source + prompt format + rewards with weights + sampling weight.

A built-in task is a `TaskSpec` in the `BUILTIN_TASKS` table (name -> import string, imported only
when used). A user task is declared in YAML, either pointing `source` at a data file / hub dataset
(with `rewards:` listed) or at their own `TaskSpec` by import string (`my_pkg.tasks:SPEC`).

Rows are plain dicts. Each carries `task` and either `prompt` (the user message text) or `messages`
(a chat), plus whatever fields its rewards need (`answer`, `tests`, ...). Rows are checked when loaded:
a row missing a field its rewards require (`rewards.base.reward_spec(required=...)`) fails with the
file and line (or row) number. JSON lines files are read here, line by line, so that a line that is
not UTF-8 or not JSON is named too; other formats are read with `datasets`.
"""
from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from envs.base import env_prompt, get_env
from rewards.base import missing_fields, required_fields
from rewards.registry import get_reward
from rewards.spec import RewardSpec
from rl.config_io import ConfigError
from rl.plugins import absolute_import_string, resolve
from rl.task_config import TaskConfig
from rl.thinking.tags import wants_thinking

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
    reference: Callable[[Row], str] | None = None
    """A completion that earns full marks on a row (shown by `rl tasks show`, checked by the tests);
    None: the row's `answer`."""
    success_threshold: float = 1.0
    """A sample counts as solved (accuracy, pass@k) when the first reward is at least this."""
    thinking_from_flags: bool = False
    """Rows carry /think or /no_think flags; each prompt's mode is what its dialog asks."""
    max_rows: int | None = None
    """Distinct rows the source holds (a data file's length); None: generated, unbounded."""
    env: str | None = None
    """Agent environment the task runs in (an `envs.get_env` name); None: single-turn."""


BUILTIN_TASKS: dict[str, str] = {
    "arithmetic": "envs.builtin.arithmetic:ARITHMETIC",
    "math_word": "envs.builtin.math:MATH_WORD",
    "competition_math": "envs.builtin.math:COMPETITION_MATH",
    "code_function": "envs.builtin.code:CODE_FUNCTION",
    "code_stdio": "envs.builtin.code:CODE_STDIO",
    "zebra_logic": "envs.builtin.puzzles:ZEBRA_LOGIC",
    "knights_knaves": "envs.builtin.puzzles:KNIGHTS_KNAVES",
    "sudoku": "envs.builtin.puzzles:SUDOKU",
    "graph_relations": "envs.builtin.puzzles:GRAPH_RELATIONS",
    "cryptarithm": "envs.builtin.puzzles:CRYPTARITHM",
    "countdown": "envs.builtin.puzzles:COUNTDOWN",
    "sequences": "envs.builtin.puzzles:SEQUENCES",
    "stem_mcq": "envs.builtin.stem:STEM_MCQ",
    "ifeval": "envs.builtin.instructions:IFEVAL",
    "length_control": "envs.builtin.instructions:LENGTH_CONTROL",
    "json_output": "envs.builtin.instructions:JSON_OUTPUT",
    "format_think": "envs.builtin.thinking:FORMAT_THINK",
    "think_follow": "envs.builtin.thinking:THINK_FOLLOW",
    "function_call": "envs.builtin.tools:FUNCTION_CALL",
    "rag": "envs.builtin.rag:RAG",
    "counterfactual": "envs.builtin.knowledge:COUNTERFACTUAL",
    "open_qa": "envs.builtin.knowledge:OPEN_QA",
    "multilingual": "envs.builtin.language:MULTILINGUAL",
    "translation": "envs.builtin.language:TRANSLATION",
    "open_writing": "envs.builtin.writing:OPEN_WRITING",
    "agent_python": "envs.agents.python:TASK",
    "agent_search": "envs.agents.search:TASK",
    "agent_game": "envs.agents.game:TASK",
    "agent_store": "envs.agents.store:TASK",
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
    success_threshold: float = 1.0
    """The first reward at or above this counts as solved (accuracy, pass@k)."""
    thinking_from_flags: bool = False
    """Each prompt's mode comes from its dialog's /think and /no_think flags, not from thinking_ratio."""
    env: str | None = None
    """Agent environment (built-in env name or absolute import string); None: single-turn."""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def primary_reward(self) -> str:
        """The component that decides accuracy and pass@k: the first reward of the task."""
        return self.rewards[0].key

    def row_mode(self, row: Row) -> bool | None:
        """The mode a row's own flags fix (tasks with `thinking_from_flags`), else None (drawn by ratio)."""
        if not self.thinking_from_flags:
            return None
        return wants_thinking(row["messages"] if "messages" in row else [{"role": "user", "content": row["prompt"]}])

    def chat(self, row: Row, thinking: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]] | None]:
        """The messages and tool schemas a row's prompt is rendered from. Agent tasks start from their
        env's `reset(row)` messages and `tools`; both kinds get the system prompt and think flags."""
        if self.env is None:
            return self.messages(row, thinking), None
        messages, tools = env_prompt(self.env, row)
        return self.messages({**row, "messages": messages}, thinking), tools

    def messages(self, row: Row, thinking: bool) -> list[dict[str, Any]]:
        """Chat messages for a row; mixed-mode tasks put the /think or /no_think flag on the user turn."""
        messages = [dict(m) for m in row["messages"]] if "messages" in row else [{"role": "user", "content": row["prompt"]}]
        if self.system_prompt and messages[0]["role"] != "system":
            messages.insert(0, {"role": "system", "content": self.system_prompt})
        if 0 < self.config.thinking_ratio < 1 and not self.thinking_from_flags:
            last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
            flag = "/think" if thinking else "/no_think"
            messages[last_user]["content"] = f"{messages[last_user]['content']} {flag}"
        return messages


def get_task_spec(name: str) -> TaskSpec:
    if name not in BUILTIN_TASKS and ":" not in name:
        raise ConfigError(f"unknown task source {name!r}. Built-ins: {sorted(BUILTIN_TASKS)}; or give a data "
                          "file (.jsonl/.json/.parquet/.csv), a hub dataset name, or 'pkg.module:SPEC'")
    spec = resolve(name, BUILTIN_TASKS, "task", attr="SPEC")
    if not isinstance(spec, TaskSpec):
        raise TypeError(f"task {name!r} must resolve to an envs.tasks.TaskSpec, got {type(spec).__name__}")
    return spec


def load_task(cfg: TaskConfig, seed: int) -> Task:
    """Build a task's rows (train + eval) and check every row against its rewards."""
    source = cfg.source or cfg.name
    labels = None
    if _is_file_or_hub(source):
        rows, labels = _load_dataset_rows(source, cfg)
        rewards, system, where = cfg.rewards, cfg.system_prompt, source
        threshold, from_flags = 1.0, False
        env = cfg.env
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
        threshold, from_flags = spec.success_threshold, spec.thinking_from_flags
        env = cfg.env or spec.env
    rows = [{**row, "task": cfg.name} for row in rows]
    check_rows(rows, rewards, cfg.name, where, labels)
    # Reward files are found from here; the reward actors run in other working directories.
    rewards = [dataclasses.replace(r, name=absolute_import_string(r.name)) for r in rewards]
    # a fixed shuffle before the split, so a file sorted by difficulty still gets a fair eval split
    random.Random(f"{seed}-{cfg.name}-split").shuffle(rows)
    eval_size = min(cfg.eval_size, len(rows) // 5)
    train, held_out = held_out_split(rows, eval_size, cfg.size)
    if not train:
        raise ConfigError(f"task {cfg.name!r}: every train row is also in the eval split ({where}); "
                          "add rows, lower eval_size, or set eval_size: 0")
    if cfg.success_threshold is not None:
        threshold = cfg.success_threshold
    if cfg.thinking_from_flags is not None:
        from_flags = cfg.thinking_from_flags
    if env is not None:
        env = absolute_import_string(env)
        try:
            get_env(env)  # a wrong name or import string fails here, not in a rollout worker
        except (ValueError, TypeError, FileNotFoundError) as exc:
            raise ConfigError(f"task {cfg.name!r}: env: {exc}") from None
        if cfg.thinking_budget is not None:
            raise ConfigError(f"task {cfg.name!r} runs in env {env!r}, and agent episodes do not apply a "
                              "thinking budget; remove thinking_budget (rollout.max_new_tokens bounds all turns)")
    return Task(config=cfg, train=train, eval=held_out, rewards=rewards,
                system_prompt=system, source=where, success_threshold=threshold, thinking_from_flags=from_flags,
                env=env)


def held_out_split(rows: list[Row], eval_size: int, size: int) -> tuple[list[Row], list[Row]]:
    """(train, eval): the first `eval_size` rows are the eval split, and train rows identical to an eval
    row are dropped, so pass@k is measured on rows the policy never trained on (small procedural
    spaces, such as one-digit arithmetic, draw the same row more than once)."""
    held_out = rows[:eval_size]
    seen = {_row_key(r) for r in held_out}
    return [r for r in rows[eval_size:] if _row_key(r) not in seen][:size], held_out


def _row_key(row: Row) -> str:
    return json.dumps(row, sort_keys=True, default=str)


def check_rows(rows: list[Row], rewards: list[RewardSpec], task: str, where: str,
               labels: list[str] | None = None) -> None:
    """Fail at load time, naming the source and row, when a row lacks what the task needs.

    labels: where each row is in `where` ("line 7" of a JSON lines file); default "row 1", "row 2", ...
    """
    if not rows:
        raise ConfigError(f"task {task!r}: {where} produced no rows")
    needs = [(spec.key, required_fields(get_reward(spec.name, **spec.kwargs))) for spec in rewards]
    for i, row in enumerate(rows):
        label = labels[i] if labels is not None else f"row {i + 1}"
        if row.get("prompt") is None and row.get("messages") is None:
            raise ConfigError(f"{where}: {label} of task {task!r} has neither `prompt` nor `messages` "
                              f"(fields: {sorted(row)}); map a column with the task's `columns` setting")
        for reward, fields in needs:
            missing = missing_fields(row, fields)
            if missing:
                either = "".join(f" ({' or '.join(f.split('|'))}: either one)" for f in missing if "|" in f)
                raise ConfigError(
                    f"{where}: {label} of task {task!r} is missing field(s) {missing}{either} that reward "
                    f"{reward!r} needs (row fields: {sorted(row)}); add the field to that row, or map a column "
                    "to it with the task's `columns: {dataset_column: field}`")


def _is_file_or_hub(source: str) -> bool:
    if source in BUILTIN_TASKS or ":" in source:
        return False
    return Path(source).suffix in {".jsonl", ".json", ".parquet", ".csv"} or "/" in source


def _load_dataset_rows(source: str, cfg: TaskConfig) -> tuple[list[Row], list[str]]:
    """Read a local file or hub dataset, rename columns, check `task` values; (rows, where each row is)."""
    path = Path(source).expanduser()
    limit = cfg.size + cfg.eval_size
    if path.suffix in {".jsonl", ".json", ".parquet", ".csv"}:
        if not path.is_file():
            raise ConfigError(f"task {cfg.name!r}: data file {path} does not exist")
        if path.suffix in {".jsonl", ".json"}:
            array = path.suffix == ".json" and _json_array(path)
            rows, labels = (_read_json_array if array else _read_json_lines)(path, limit)
            columns = dict.fromkeys(key for row in rows for key in row)  # as `datasets` would: one set of
            rows = [{key: row.get(key) for key in columns} for row in rows]  # columns, None where a row has none
        else:
            rows = _read_with_datasets(path, cfg.name, limit)
            labels = [f"row {i + 1}" for i in range(len(rows))]
    else:
        import datasets

        ds = datasets.load_dataset(source, split=cfg.options.get("split", "train"))
        rows = [dict(r) for r in ds.select(range(min(len(ds), limit)))]
        labels = [f"row {i + 1}" for i in range(len(rows))]
    if cfg.columns:
        rows = _rename_columns(rows, cfg.columns, cfg.name, source)
    for row, label in zip(rows, labels):
        if row.get("task") not in (None, cfg.name):
            raise ConfigError(f"{source}: {label} has task {row['task']!r}, but this file is declared as "
                              f"task {cfg.name!r}; fix the row or split the file per task")
    return rows, labels


def _rename_columns(rows: list[Row], columns: dict[str, str], task: str, source: str) -> list[Row]:
    present = set().union(*(row.keys() for row in rows)) if rows else set()
    missing = [c for c in columns if c not in present]
    if missing:
        raise ConfigError(f"task {task!r}: columns {missing} not in {source} (has {sorted(present)})")
    clashes = sorted(t for t in columns.values() if t in present and t not in columns)
    if clashes:
        raise ConfigError(f"task {task!r}: `columns` renames to {clashes}, which {source} already has; "
                          "rename or drop the existing column first")
    return [{columns.get(k, k): v for k, v in row.items()} for row in rows]


def _json_array(path: Path) -> bool:
    """Whether a .json file holds one JSON array (read with `datasets`) rather than JSON lines."""
    with open(path, "rb") as f:
        return f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"["


def _read_json_lines(path: Path, limit: int) -> tuple[list[Row], list[str]]:
    """The first `limit` rows of a JSON lines file, one object per non-blank line; a line that is not UTF-8,
    not JSON or not an object raises ConfigError naming the file and the line (1-based)."""
    rows: list[Row] = []
    labels: list[str] = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            if len(rows) >= limit:
                break
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{path}, line {number}: not valid UTF-8 (byte {exc.start + 1} of the line is "
                                  f"{raw[exc.start:exc.start + 1]!r}); save the file as UTF-8") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except ValueError as exc:  # JSONDecodeError, or an integer of over 4300 digits
                where = f", column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
                raise ConfigError(f"{path}, line {number}{where}: not valid JSON ({getattr(exc, 'msg', exc)}); each "
                                  "line of a .jsonl file holds one JSON object") from None
            if not isinstance(row, dict):
                raise ConfigError(f"{path}, line {number}: a JSON {type(row).__name__}, not an object; each line "
                                  'of a .jsonl file holds one row as an object, e.g. {"prompt": ..., "answer": ...}')
            rows.append(row)
            labels.append(f"line {number}")
    return rows, labels


def _read_json_array(path: Path, limit: int) -> tuple[list[Row], list[str]]:
    """The first `limit` objects of a .json file that holds one array of row objects."""
    _check_utf8(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8-sig"))
    except ValueError as exc:
        where = f", line {exc.lineno}, column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise ConfigError(f"{path}{where}: not valid JSON ({getattr(exc, 'msg', exc)}); a .json task file holds "
                          "an array of row objects (or one object per line)") from None
    if not isinstance(items, list):
        raise ConfigError(f"{path}: a .json task file holds an array of row objects, got a {type(items).__name__}")
    for i, item in enumerate(items[:limit]):
        if not isinstance(item, dict):
            raise ConfigError(f"{path}: row {i + 1} is a JSON {type(item).__name__}, not an object")
    return items[:limit], [f"row {i + 1}" for i in range(min(len(items), limit))]


def _read_with_datasets(path: Path, task: str, limit: int) -> list[Row]:
    """A .parquet or .csv file through `datasets`; a .csv file is checked to be UTF-8 first."""
    import datasets

    if path.suffix == ".csv":
        _check_utf8(path)
    kind = {".parquet": "parquet", ".csv": "csv"}[path.suffix]
    try:
        ds = datasets.load_dataset(kind, data_files=str(path), split="train")
    except Exception as exc:  # datasets wraps parse errors in many types; name the file
        raise ConfigError(f"task {task!r}: cannot read {path}: {exc}") from exc
    return [dict(r) for r in ds.select(range(min(len(ds), limit)))]


def _check_utf8(path: Path) -> None:
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ConfigError(f"{path}, line {number}: not valid UTF-8 (byte {exc.start + 1} of the line is "
                                  f"{raw[exc.start:exc.start + 1]!r}); save the file as UTF-8") from None
