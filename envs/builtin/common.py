"""Helpers shared by the built-in task modules: packaged data files and option checking.

    rows = data_rows("translation.jsonl")           # envs/data/translation.jsonl, as a list of dicts
    rows = sample_rows(rows, size=100, seed=0, name="translation")   # seeded shuffle, at most `size`
"""
from __future__ import annotations

import functools
import json
import random
from importlib import resources
from typing import Any

from envs.tasks import Row

ANSWER_TAGS = "Give your final answer inside <answer></answer> tags."
"""What reasoning-gym style prompts ask for; `rewards.puzzles` reads the last <answer> block."""


@functools.lru_cache(maxsize=None)
def _read(name: str) -> tuple[str, ...]:
    text = resources.files("envs.data").joinpath(name).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line.strip())


def data_rows(name: str) -> list[Row]:
    """The rows of packaged data file envs/data/`name` (JSON lines); a bad line names file and line."""
    rows = []
    for i, line in enumerate(_read(name), start=1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise ValueError(f"envs/data/{name}: line {i} is not JSON ({exc})") from None
    return rows


def count_rows(name: str) -> int:
    return len(_read(name))


def sample_rows(rows: list[Row], size: int, seed: int, name: str) -> list[Row]:
    """A seeded shuffle of `rows`, at most `size` of them (a data file cannot give more than it holds)."""
    order = list(rows)
    random.Random(f"{name}-{seed}").shuffle(order)
    return [dict(r) for r in order[:size]]


def check_options(task: str, options: dict[str, Any], allowed: dict[str, Any]) -> dict[str, Any]:
    """`allowed` (the defaults) updated with `options`; unknown option names raise with the choices."""
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"task {task!r}: unknown option(s) {unknown}; it takes {sorted(allowed)}")
    return {**allowed, **options}


def tagged(answer: Any) -> str:
    return f"<answer>{answer}</answer>"
