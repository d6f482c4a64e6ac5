"""Math answer equivalence with math-verify (sympy): 1.0 when the completion's answer equals `answer`.

    from rewards.math import math_reward
    math_reward("... so the answer is \\boxed{\\frac{3}{4}}", answer="0.75").score   # -> 1.0

Prediction: math-verify extracts the answer from the completion, LaTeX first (`\\boxed{}` has the
highest priority, then "final answer is $...$", then any `$...$`), then plain expressions ("the answer
is 42", and as a last resort the last number in the text). If the completion still holds a
`<think>...</think>` block, only the answer after it is scored.

Gold (`answer` column): LaTeX without delimiters as MATH ships it ("\\frac{3}{4}", "(1,2]", "x^2+1"),
LaTeX with delimiters ("$x=2$", "\\boxed{3}"), or a plain number ("72", "7,425,000", "3/4", "0.75").
A plain number is read as an expression (so "1,22" is 1.22, not the set {1, 22}); anything else without
delimiters is wrapped in `$...$` and read as LaTeX. A gold answer that does not parse either way is a
dataset bug and raises ValueError (it must not silently teach the model that every answer is wrong).

Timeouts: math-verify's own timeouts use `signal.alarm`, which raises outside the main thread (Ray
runs tasks in threads). They are switched off here (`parsing_timeout=None`, `timeout_seconds=None`);
the reward runner enforces a wall-clock timeout per sample in a process it can kill.
"""
from __future__ import annotations

import re
from typing import Any

from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from rewards.base import RewardResult, reward_spec
from rl.thinking.tags import split_thinking

# The configuration of math-verify's own regression tests: LaTeX (boxed first) and plain expressions.
_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_FLOAT_ROUNDING = 6
"""Decimal places compared for floats (math-verify's default): 0.333333 matches 1/3."""

_LATEX_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
# Digits, separators, sign, fraction bar and percent only: parsed as a plain expression.
_PLAIN_NUMBER = re.compile(r"[\d\s.,+\-/%]+")
_NUMBER_LITERAL = re.compile(r"[-+]?\d[\d,]*(\.\d+)?")


def _parse(text: str) -> list[Any]:
    # Timeouts off: see the module docstring (signal.alarm fails in threads; the runner kills instead).
    return parse(text, list(_EXTRACTION), parsing_timeout=None)


def parse_gold(answer: str | int | float) -> list[Any]:
    """math-verify's parse of a gold answer (see the module docstring); raises if nothing parses."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise TypeError(f"math reward: gold `answer` must be a string or number, got {type(answer).__name__} "
                        f"{answer!r:.80}")
    text = str(answer).strip()
    wrapped = f"${text}$"
    if any(d in text for d in _LATEX_DELIMITERS):
        candidates = [text]
    elif _PLAIN_NUMBER.fullmatch(text):
        candidates = [text, wrapped]
    else:
        candidates = [wrapped, text]
    for candidate in candidates:
        gold = _parse(candidate)
        if gold:
            return gold
    raise ValueError(f"math reward: gold answer {text!r:.200} does not parse as LaTeX or as an expression; "
                     "fix the dataset row (give the final answer only, e.g. '\\\\frac{3}{4}' or '0.75')")


@reward_spec(required=("answer",))
def math_reward(completion: str, *, answer: str | int | float, numeric_only: bool = False,
                **row: Any) -> RewardResult:
    """1.0 if the completion's final answer is mathematically equivalent to `answer`, else 0.0.

    numeric_only: count the answer only when it is a number literal. math-verify evaluates an
    extracted expression, so restating the question ("What is 3 - 7?" -> "3 - 7") would score 1.0;
    arithmetic tasks set this to stop GRPO from learning to echo the question.
    details: {"parsed": prediction as sympy text or None, "gold": gold as sympy text}.
    """
    gold = parse_gold(answer)
    _, answer_part = split_thinking(completion)
    predicted = _parse(answer_part)
    if not predicted:
        # Malformed model output (no extractable answer, or an unclosed think block): score 0.
        return RewardResult(0.0, {"parsed": None, "gold": str(gold[0]), "reason": "no answer found"})
    if numeric_only and not _NUMBER_LITERAL.fullmatch(str(predicted[-1]).strip()):
        return RewardResult(0.0, {"parsed": str(predicted[-1]), "gold": str(gold[0]),
                                  "reason": "answer is an expression, not a number"})
    # verify(gold, prediction) is not symmetric: gold must come first (see math-verify's README).
    correct = verify(gold, predicted, float_rounding=_FLOAT_ROUNDING, timeout_seconds=None)
    return RewardResult(1.0 if correct else 0.0, {"parsed": str(predicted[0]), "gold": str(gold[0])})
