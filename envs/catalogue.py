"""The task catalogue behind `rl tasks` and `rl tasks show NAME`.

    rl tasks [--json]                     # every built-in task: reward, data source, size
    rl tasks show NAME [--json] [--seed N] [--model DIR]   # a sample prompt, its reference answer, and its reward

`show` scores the reference the way training does: the row gets the mode its prompt was rendered in
(`thinking`), the completion gets the think block a non-thinking prompt already holds, and the task's
rewards run in a `RewardRunner` (killable processes, per-call timeout). Model-based rewards need their
model: `--model` loads one (a folder or `packaged:NAME`) for the judge and reward_model rewards;
without it and without a running judge / reward-model actor the score is null and `errors` says why.
"""
from __future__ import annotations

import json
from typing import Any

from envs.tasks import BUILTIN_TASKS, Row, Task, TaskSpec, get_task_spec, load_task
from rewards.runner import RewardRunner
from rewards.spec import RewardSpec, ScoreRequest
from rl.task_config import TaskConfig
from rl.models import resolve_model_path
from rl.thinking.tags import EMPTY_THINK, THINK_OPEN


def reward_text(rewards: list[RewardSpec]) -> str:
    """"math (1.0) + format (0.1)"."""
    return " + ".join(f"{spec.key} ({spec.weight:g})" for spec in rewards)


def describe(name: str) -> dict[str, Any]:
    """One catalogue entry: name, reward, source, size (rows, or "unbounded"), and how modes are chosen."""
    spec = get_task_spec(name)
    return {
        "name": name, "description": spec.description, "reward": reward_text(spec.rewards),
        "rewards": [{"name": s.name, "weight": s.weight, "kwargs": s.kwargs} for s in spec.rewards],
        "source": spec.source, "size": spec.max_rows if spec.max_rows is not None else "unbounded",
        "thinking": "from the row's /think and /no_think flags" if spec.thinking_from_flags else "thinking_ratio",
        "env": spec.env, "success_threshold": spec.success_threshold,
    }


def list_tasks() -> list[dict[str, Any]]:
    return [describe(name) for name in BUILTIN_TASKS]


def sample_task(name: str, seed: int = 0, size: int = 8) -> Task:
    """A built-in task loaded with a few rows (all in train), as `rl train` would load it."""
    return load_task(TaskConfig(name=name, size=size, eval_size=0), seed)


def reference_answer(spec: TaskSpec, row: Row) -> str | None:
    """The answer that earns full marks: the spec's `reference`, else the row's `answer` (None if neither)."""
    if spec.reference is not None:
        return spec.reference(row)
    return None if row.get("answer") is None else str(row["answer"])


def scored_row(task: Task, row: Row) -> tuple[Row, bool]:
    """The row as the driver hands it to rewards (with the prompt's mode), and that mode."""
    mode = task.row_mode(row)
    thinking = mode if mode is not None else task.config.thinking_ratio >= 1.0
    return {**row, "thinking": thinking}, thinking


def as_completion(text: str, thinking: bool) -> str:
    """What rewards see for a model that wrote `text`: a non-thinking prompt already ends with the empty
    think block (rl.thinking.tags.response_prefix), so the response starts with it unless `text` has one."""
    if text.lstrip().startswith(THINK_OPEN) or thinking:
        return text
    return EMPTY_THINK + text


def score_requests(task: Task, row: Row, texts: list[str]) -> list[ScoreRequest]:
    """Requests that score answer texts for one row with the task's rewards, as training would."""
    full_row, thinking = scored_row(task, row)
    return [ScoreRequest(as_completion(t, thinking), full_row) for t in texts]


MODEL_KWARG = {"judge": "judge", "reward_model": "model"}
"""The keyword that names the model of each model-based built-in reward."""


def with_model(rewards: list[RewardSpec], model: str) -> list[RewardSpec]:
    """`rewards` with the judge / reward model pointed at `model` (a folder or `packaged:NAME`)."""
    path = resolve_model_path(model)
    return [RewardSpec(s.name, s.weight, {**s.kwargs, MODEL_KWARG[s.name]: path}, s.alias, s.model_based)
            if s.name in MODEL_KWARG else s for s in rewards]


def show_task(name: str, seed: int = 0, index: int = 0, timeout_s: float = 60.0,
              model: str | None = None) -> dict[str, Any]:
    """A sample prompt of task `name`, its reference answer and that answer's reward (`model`: load this
    model for the judge / reward_model rewards instead of looking for their actors)."""
    spec = get_task_spec(name)
    task = sample_task(name, seed, size=max(8, index + 1))
    if model is not None:
        task.rewards = with_model(task.rewards, model)
    row = task.train[index]
    _, thinking = scored_row(task, row)
    messages, tools = task.chat(row, thinking)
    reference = reference_answer(spec, row)
    users = [m["content"] for m in messages if m["role"] == "user"]
    info = {**describe(name), "prompt": users[-1] if users else "", "messages": messages, "tools": tools,
            "thinking_mode": thinking, "reference": reference}
    if task.env is not None or reference is None:
        # An agent task's reward comes from its episode (row["env_info"]), which only a rollout produces.
        why = "agent task: the env scores whole episodes (docs/agents.md)" if task.env else "no reference answer"
        return {**info, "reward_for_reference": None, "components": {}, "errors": {}, "details": {}, "note": why}
    with RewardRunner({task.name: task.rewards}, timeout_s=timeout_s, num_procs=1) as runner:
        result = runner.score(score_requests(task, row, [reference]))[0]
    return {**info, "reward_for_reference": None if result.all_none else result.reward,
            "components": result.components, "errors": result.errors, "details": result.details}


def format_list(entries: list[dict[str, Any]]) -> str:
    width = max(len(e["name"]) for e in entries)
    lines = [f"{'task':{width}s}  {'reward':32s}  {'size':>9s}  source", "-" * (width + 70)]
    for e in entries:
        lines.append(f"{e['name']:{width}s}  {e['reward']:32s}  {str(e['size']):>9s}  {e['source']}")
    lines.append(f"\n{len(entries)} tasks. `rl tasks show NAME` prints a sample prompt and the reward of its reference.")
    return "\n".join(lines)


def format_show(info: dict[str, Any]) -> str:
    out = [f"task: {info['name']}  ({info['description']})", f"reward: {info['reward']}",
           f"source: {info['source']}  size: {info['size']}  mode: {'think' if info['thinking_mode'] else 'no_think'}",
           "", "prompt messages:"]
    out += [f"  [{m['role']}] {m['content']}" for m in info["messages"]]
    out += ["", f"reference answer:\n  {info['reference']}", "",
            f"reward for the reference: {info['reward_for_reference']}  components: {info['components']}"]
    if info["errors"]:
        out.append(f"errors: {info['errors']}")
    if "note" in info:
        out.append(f"note: {info['note']}")
    return "\n".join(out)


def run(action: str, name: str | None, as_json: bool, seed: int = 0, model: str | None = None) -> str:
    """What `rl tasks ...` prints."""
    if action == "list":
        entries = list_tasks()
        return json.dumps(entries, indent=2) if as_json else format_list(entries)
    if not name:
        raise ValueError(f"rl tasks show NAME: choose one of {sorted(BUILTIN_TASKS)}")
    info = show_task(name, seed, model=model)
    return json.dumps(info, indent=2, default=str, ensure_ascii=False) if as_json else format_show(info)
