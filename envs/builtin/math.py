"""Math tasks: word problems (GSM8K-style, from reasoning-gym) and competition-style problems with
\\boxed answers (procedural), both scored by math-verify equivalence (reward "math").

Options: math_word takes reasoning-gym's `gsm_symbolic` config (e.g. `difficulty`); competition_math
takes `kinds` (a list of problem kinds from `KINDS`, default all).
"""
from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import Any, Callable

import reasoning_gym

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

BOXED = "Put your final answer in \\boxed{}."


# ------------------------------------------------------------------------------------- word problems
def word_problems(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    # Rows keep only question and answer: the entries' metadata holds Fractions that JSON cannot store,
    # and the answer is a plain number that math-verify compares.
    dataset = reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed, **options)
    return [{"prompt": entry["question"], "answer": str(entry["answer"])} for entry in dataset]


MATH_WORD = TaskSpec(
    name="math_word",
    description="grade-school word problems (GSM8K-style templates); math-verify on the final number",
    generate=word_problems,
    rewards=[RewardSpec("math", 1.0)],
    source="reasoning-gym:gsm_symbolic",
    reference=lambda row: f"The answer is {row['answer']}.",
)


# -------------------------------------------------------------------------------- competition style
def _latex(value: Fraction | int) -> str:
    value = Fraction(value)
    if value.denominator == 1:
        return str(value.numerator)
    sign = "-" if value < 0 else ""
    return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"


def _divisors(rng: random.Random) -> tuple[str, Fraction | int]:
    exps = {p: rng.randint(0, 3) for p in (2, 3, 5, 7)}
    n = math.prod(p**e for p, e in exps.items())
    count = sum(1 for d in range(1, n + 1) if n % d == 0)
    return f"How many positive divisors does {n} have?", count


def _power_mod(rng: random.Random) -> tuple[str, Fraction | int]:
    a, b, m = rng.randint(2, 9), rng.randint(10, 60), rng.choice([5, 7, 9, 11, 13])
    return f"What is the remainder when ${a}^{{{b}}}$ is divided by {m}?", pow(a, b, m)


def _inclusion_exclusion(rng: random.Random) -> tuple[str, Fraction | int]:
    n, a, b = rng.randint(50, 300), rng.choice([2, 3, 4, 5]), rng.choice([6, 7, 9, 11])
    count = n // a + n // b - n // math.lcm(a, b)
    return f"How many integers from 1 to {n} inclusive are divisible by {a} or {b}?", count


def _linear(rng: random.Random) -> tuple[str, Fraction | int]:
    a, b, c = rng.choice([2, 3, 4, 5, 6, 7]), rng.randint(-9, 9), rng.randint(-20, 20)
    return f"Solve for $x$: ${a}x {'+' if b >= 0 else '-'} {abs(b)} = {c}$.", Fraction(c - b, a)


def _dice(rng: random.Random) -> tuple[str, Fraction | int]:
    s = rng.randint(2, 12)
    ways = sum(1 for i in range(1, 7) for j in range(1, 7) if i + j == s)
    return f"Two fair six-sided dice are rolled. What is the probability that the sum is {s}?", Fraction(ways, 36)


def _binomial(rng: random.Random) -> tuple[str, Fraction | int]:
    n = rng.randint(5, 12)
    k = rng.randint(2, n - 2)
    return f"In how many ways can a committee of {k} be chosen from {n} people?", math.comb(n, k)


def _series(rng: random.Random) -> tuple[str, Fraction | int]:
    a, d, n = rng.randint(1, 9), rng.randint(2, 7), rng.randint(8, 30)
    terms = ", ".join(str(a + i * d) for i in range(3))
    return f"What is the sum of the first {n} terms of the arithmetic sequence {terms}, ...?", n * (2 * a + (n - 1) * d) // 2


def _roots(rng: random.Random) -> tuple[str, Fraction | int]:
    r, s = rng.randint(-9, 9), rng.randint(-9, 9)
    b, c = -(r + s), r * s
    poly = f"x^2 {'+' if b >= 0 else '-'} {abs(b)}x {'+' if c >= 0 else '-'} {abs(c)}"
    return f"What is the sum of the squares of the roots of ${poly} = 0$?", r * r + s * s


KINDS: dict[str, Callable[[random.Random], tuple[str, Fraction | int]]] = {
    "divisors": _divisors, "power_mod": _power_mod, "inclusion_exclusion": _inclusion_exclusion,
    "linear": _linear, "dice": _dice, "binomial": _binomial, "series": _series, "roots": _roots,
}


def competition_problems(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("competition_math", options, {"kinds": list(KINDS)})
    unknown = sorted(set(opts["kinds"]) - set(KINDS))
    if unknown or not opts["kinds"]:
        raise ValueError(f"competition_math: unknown kinds {unknown}; choose from {sorted(KINDS)}")
    rng = random.Random(f"competition_math-{seed}")
    rows = []
    for _ in range(size):
        kind = rng.choice(opts["kinds"])
        question, answer = KINDS[kind](rng)
        rows.append({"prompt": f"{question} {BOXED}", "answer": _latex(answer), "kind": kind})
    return rows


COMPETITION_MATH = TaskSpec(
    name="competition_math",
    description="competition-style number theory, counting, algebra, probability; \\boxed answer, math-verify",
    generate=competition_problems,
    rewards=[RewardSpec("math", 1.0)],
    source="procedural",
    reference=lambda row: f"The answer is $\\boxed{{{row['answer']}}}$.",
)
