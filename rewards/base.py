"""The reward contract shared by built-in and user rewards.

A reward is a plain function::

    def score(completion: str, **row) -> float | None | RewardResult

`completion` is the answer text (the thinking block is removed by the caller unless the function is
marked `raw_completion=True`); `row` carries the dataset columns plus `task` (and `env_info` for
agent tasks). Extra row fields must be ignored, so every reward takes `**row`. `None` means "not
applicable to this sample" and is left out of weighted sums. A reward may be `async def`.

`reward_spec` marks what a reward needs, so the task loader can reject a dataset row that lacks a
required field at load time (naming the file and line) instead of at step 500. An entry "tests|test"
of `required` is a choice: the row needs at least one of those fields.
"""
from __future__ import annotations

import asyncio
import inspect
import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Union

from rl.thinking.tags import split_thinking

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_DEPTH_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}

RewardValue = Union[float, None, "RewardResult"]
RewardFn = Callable[..., Union[RewardValue, Awaitable[RewardValue]]]


@dataclass
class RewardResult:
    """A score plus details that explain it (shown by `rl score`, logged with rollouts)."""

    score: float | None
    """The reward; None = not applicable to this sample."""
    details: dict[str, Any] = field(default_factory=dict)
    """JSON-serialisable explanation, e.g. {"parsed": "3/4", "gold": "0.75"}."""


def reward_spec(*, required: tuple[str, ...] = (), raw_completion: bool = False):
    """Declare the row fields a reward needs and whether it wants the raw completion (with thinking).

    required: row fields that must be present and not None; "a|b" accepts either field (e.g. the code
    reward's `("tests|test",)`). This only sets two attributes on the function; it is optional for
    user rewards.
    """
    if isinstance(required, str) or not all(isinstance(f, str) and f.strip("|") for f in required):
        raise TypeError(f"reward_spec(required=...) takes a tuple of field names such as ('answer',) or "
                        f"('tests|test',), got {required!r}")

    def mark(fn: RewardFn) -> RewardFn:
        fn.required_fields = tuple(required)
        fn.raw_completion = raw_completion
        return fn

    return mark


def required_fields(fn: Any) -> tuple[str, ...]:
    """Row fields `fn` declared with `reward_spec` (partials are unwrapped)."""
    while hasattr(fn, "func") and not hasattr(fn, "required_fields"):
        fn = fn.func
    return tuple(getattr(fn, "required_fields", ()))


def missing_fields(row: dict[str, Any], fields: tuple[str, ...] | list[str]) -> list[str]:
    """The entries of `fields` (as `reward_spec` declares them) that `row` lacks: a field counts when
    its value is not None; "a|b" counts when any of its alternatives does."""
    return [f for f in fields if all(row.get(name) is None for name in f.split("|"))]


def wants_raw_completion(fn: Any) -> bool:
    while hasattr(fn, "func") and not hasattr(fn, "raw_completion"):
        fn = fn.func
    return bool(getattr(fn, "raw_completion", False))


def require(row: dict[str, Any], reward: str, *fields: str) -> None:
    """Raise a clear error when `row` lacks a field that reward `reward` needs."""
    missing = missing_fields(row, fields)
    if missing:
        raise ValueError(
            f"reward {reward!r} needs row field(s) {missing}; the row has {sorted(row)}. "
            f"Add the column to the dataset or map it with the task's `columns` setting."
        )


def as_result(value: Any, reward: str) -> RewardResult:
    """Normalise what a reward returned; garbage (NaN, strings, ...) is a reward bug and raises."""
    if isinstance(value, RewardResult):
        result = value
    elif value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        result = RewardResult(None if value is None else float(value))
    elif isinstance(value, bool):
        result = RewardResult(float(value))
    else:
        raise TypeError(f"reward {reward!r} returned {type(value).__name__} {value!r:.80}; "
                        "return a float, None or RewardResult")
    if result.score is not None:
        score = float(result.score)
        if score != score or score in (float("inf"), float("-inf")):
            raise ValueError(f"reward {reward!r} returned a non-finite score {score}")
        result.score = score
    return result


def json_value(value: Any, what: str, error: type[Exception] = ValueError) -> Any:
    """`value`, or the JSON a string holds (dataset columns may carry objects as JSON text); a string
    that is not JSON raises `error`, naming `what`."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise error(f"{what} is a string but not JSON ({exc}): {value!r:.200}") from None


def json_object(value: Any, what: str, error: type[Exception] = ValueError) -> dict[str, Any]:
    """`value` as a dict: itself, or the JSON object a string holds; else `error`, naming `what`."""
    value = json_value(value, what, error)
    if not isinstance(value, dict):
        raise error(f"{what} must be an object (a dict or its JSON), got {value!r:.120}")
    return value


def json_depth(text: str) -> int:
    """The deepest nesting of `[`/`{` in `text` outside JSON strings, in linear time without recursion:
    exact for valid JSON; in other text, quotes are paired left to right and an unterminated string's
    brackets count. Check it before json.loads of model output, which recurses (RecursionError)."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def call_reward(fn: RewardFn, name: str, completion: str, row: dict[str, Any]) -> RewardResult:
    """The one way a reward is called (reward runner, `rl score`, thinking eval): `fn` gets the answer
    part of `completion` (the whole of it when it was marked `raw_completion`) and the row; an
    awaitable result (a coroutine or any other awaitable) is awaited in an event loop of its own (every
    caller is synchronous: a runner worker process, the CLI, the eval loop); the value is checked with
    `as_result`, and its details must be JSON (they are logged with rollouts). A reward's exception
    propagates."""
    text = completion if wants_raw_completion(fn) else split_thinking(completion)[1]
    value = fn(text, **row)
    if inspect.isawaitable(value):
        value = asyncio.run(_awaited(value))  # asyncio.run takes coroutines only: wrap other awaitables
    result = as_result(value, name)
    try:
        json.dumps(result.details)
    except (TypeError, ValueError) as exc:  # ValueError: a circular reference
        raise type(exc)(f"reward {name!r} returned details that are not JSON ({exc}); put only strings, "
                        "numbers, booleans, None, lists and dicts in RewardResult.details") from None
    return result


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
