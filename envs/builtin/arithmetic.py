"""Arithmetic: procedurally generated expressions, scored by math-verify plus a format reward.

Options (`options:` in the task's YAML): `digits` (max digits per operand, default 1), `terms`
(operands per expression, default 2), `ops` (operators to draw from, default "+-").
The defaults are chosen so that SmolLM2-135M-Instruct starts at a reward where GRPO groups have
variance (see README: with two-digit operands it solves almost none, and nothing is learned).
"""
from __future__ import annotations

import random
from typing import Any

from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

PROMPT = "What is {expr}? Answer with just the number."


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    digits = int(options.get("digits", 1))
    terms = int(options.get("terms", 2))
    ops = str(options.get("ops", "+-"))
    unknown = set(options) - {"digits", "terms", "ops"}
    if unknown or digits < 1 or terms < 2 or not set(ops) <= set("+-*"):
        raise ValueError(f"arithmetic options: digits >= 1, terms >= 2, ops from '+-*' (got {options})")
    rng = random.Random(f"arithmetic-{seed}")
    rows = []
    for _ in range(size):
        numbers = [rng.randint(0, 10**digits - 1) for _ in range(terms)]
        expr = str(numbers[0])
        for n in numbers[1:]:
            expr += f" {rng.choice(ops)} {n}"
        rows.append({"prompt": PROMPT.format(expr=expr), "answer": str(eval(expr))})  # expr is ours: digits and +-*
    return rows


ARITHMETIC = TaskSpec(
    name="arithmetic",
    description="integer expressions like '7 + 5 - 3'; math-verify equivalence + answer format",
    generate=generate,
    rewards=[RewardSpec("math", 1.0, {"numeric_only": True}), RewardSpec("format", 0.1)],
    source="procedural",
)
