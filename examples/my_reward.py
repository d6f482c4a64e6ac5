"""Example user rewards, loaded by import string (docs/rewards.md walks through them).

    rl score --reward examples/my_reward.py:units --completion "It goes 120 km." --row '{"answer": "120", "unit": "km"}'
    rl train examples/my_reward.yaml --steps 5              # a run that uses both rewards below

`units` is a plain function with the reward contract: `completion` (the answer, thinking removed) and
the row's fields as keyword arguments (`**row` swallows the ones it does not use). `brevity` is an
async reward that returns None on rows it does not apply to.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any

from rewards import RewardResult, reward_spec

_NUMBER_AND_UNIT = re.compile(r"(-?\d+(?:\.\d+)?)\s*([A-Za-z/%°]+)?")


@reward_spec(required=("answer",))  # rows without `answer` are rejected when the task loads, naming the row
def units(completion: str, *, answer: str, unit: str | None = None, unit_credit: float = 0.5,
          **row: Any) -> RewardResult:
    """1.0 when the last number in the answer equals `answer` and carries `unit`; `unit_credit` when the
    number is right but the unit is missing or wrong; 0.0 otherwise. details say what was read."""
    found = _NUMBER_AND_UNIT.findall(completion)
    if not found:
        # Malformed model output (no number at all): a wrong answer, score 0, not an error.
        return RewardResult(0.0, {"number": None})
    number, said_unit = found[-1]
    details = {"number": number, "unit": said_unit or None}
    if float(number) != float(answer):
        return RewardResult(0.0, details)
    if unit is None or said_unit.lower() == unit.lower():
        return RewardResult(1.0, details)
    return RewardResult(unit_credit, details)


async def brevity(completion: str, *, max_words: int = 30, **row: Any) -> float | None:
    """max_words / words when the answer is longer than `max_words`, else 1.0; None (not applicable)
    on rows marked `free_length`. Async like a reward that awaits a service: the runner awaits it."""
    if row.get("free_length"):
        return None
    await asyncio.sleep(0)  # stands in for an awaited call (an HTTP scorer, a database lookup, ...)
    words = len(completion.split())
    return 1.0 if words <= max_words else max_words / words
