"""Math answer equivalence with math-verify (sympy): 1.0 when the completion's answer equals `answer`.

    from rewards.math import math_reward
    math_reward("... so the answer is \\boxed{\\frac{3}{4}}", answer="0.75").score   # -> 1.0

Prediction: math-verify extracts the answer from the completion, LaTeX first (`\\boxed{}` has the
highest priority, then "final answer is $...$", then any `$...$`), then plain expressions ("the answer
is 42", and as a last resort the last number in the text). If the completion still holds a
`<think>...</think>` block, only the answer after it is scored.

Gold (`answer` column): LaTeX without delimiters as MATH ships it ("\\frac{3}{4}", "(1,2]", "x^2+1"),
LaTeX with delimiters ("$x=2$", "\\boxed{3}"), or a plain number ("72", "7,425,000", "3/4", "0.75",
"$18.90", "18.90 dollars"). A plain number is read as an expression (so "1,22" is 1.22, not the set
{1, 22}); a comma list ("1, 2, 3") and anything else without delimiters is wrapped in `$...$` and read
as LaTeX (a list is a set: order does not matter). A gold answer that does not parse either way is a
dataset bug and raises ValueError (it must not silently teach the model that every answer is wrong).

Equivalence: math-verify's `verify` first; when it says no, three readings it lacks are tried (each
explained where it is written): `i` as the imaginary unit, `f(x) = ...` against `y = ...`, and a
set answer given as several `\\boxed{}` or as a plain list.

Bounded cost (rewards/math_guard.py): only the answer's tail is parsed, deep nesting and huge numbers
score 0 before sympy sees them, and a watchdog ends the rest after TIME_BUDGET_S; every input returns
within about 1 s, in any thread. math-verify's own signal.alarm timeouts are off (`parsing_timeout=None`,
`timeout_seconds=None`): whole seconds only, and they raise outside the main thread (Ray runs tasks in
threads).
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify
from sympy.core.function import AppliedUndef

from rewards.base import RewardResult, reward_spec
from rewards.math_guard import (TIME_BUDGET_S, OutOfTime, answer_window, expr_refusal, text_refusal,
                                time_budget)
from rl.thinking.tags import split_thinking

# The configuration of math-verify's own regression tests: LaTeX (boxed first) and plain expressions.
_EXTRACTION = (LatexExtractionConfig(boxed_match_priority=0), ExprExtractionConfig())
_FLOAT_ROUNDING = 6
"""Decimal places compared for floats (math-verify's default): 0.333333 matches 1/3."""

_LATEX_DELIMITERS = ("$", "\\(", "\\[", "\\boxed")
# Digits, separators, sign, fraction bar and percent only: parsed as a plain expression.
_PLAIN_NUMBER = re.compile(r"[\d\s.,+\-/%]+")
_THOUSANDS = re.compile(r"[-+]?\d{1,3}(,\d{3})+(\.\d+)?")
_NUMBER_LITERAL = re.compile(r"[-+]?\d[\d,]*(\.\d+)?")
# Gold answers in GSM8K style carry a currency ("$18.90", "18.90 dollars"): math-verify reads "\$18.90"
# as nothing and "18.90 dollars" as 18.9*d*o*l*l*a*r*s, so the currency is dropped from a gold number.
_CURRENCY = re.compile(r"^(?:\\?\$|US\$|€|£|¥|₹)\s*(?=[-+\d.])|\s*(?:\\text\{\s*)?(?:dollars?|USD|euros?)\}?\.?$")
# math-verify's LaTeX normalisation drops `\mathrm{i}`, `\text{i}` and `\mathrm{e}` (3 + 4\mathrm{i} reads
# as 3 + 4 = 7, 2\mathrm{e} as 2) and reads `\imath` as a symbol "imath": spell the constants `i` and `e`.
_UPRIGHT_CONSTANT = re.compile(r"\\(?:mathrm|text|textrm|mathit|operatorname)\s*\{\s*([ie])\s*\}|\\(i)math(?![A-Za-z])")
# A plain comma list at the very end ("The roots are 1, 2, and 3."): math-verify reads its last number.
_TRAILING_LIST = re.compile(r"(-?\d+(?:\.\d+)?(?:\s*,\s*(?:and\s+)?-?\d+(?:\.\d+)?)+)\s*\.?\s*$")


def _parse(text: str) -> list[Any]:
    # Timeouts off: see the module docstring (signal.alarm fails in threads; math_guard bounds instead).
    return parse(_UPRIGHT_CONSTANT.sub(lambda m: m.group(1) or m.group(2), text), list(_EXTRACTION),
                 parsing_timeout=None)


def _verify(gold: list[Any], predicted: list[Any]) -> bool:
    # verify(gold, prediction) is not symmetric: gold must come first (see math-verify's README).
    return verify(gold, predicted, float_rounding=_FLOAT_ROUNDING, timeout_seconds=None)


def parse_gold(answer: str | int | float) -> list[Any]:
    """math-verify's parse of a gold answer (see the module docstring); raises if nothing parses."""
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise TypeError(f"math reward: gold `answer` must be a string or number, got {type(answer).__name__} "
                        f"{answer!r:.80}")
    return list(_parse_gold(str(answer).strip()))


@lru_cache(maxsize=4096)
def _parse_gold(text: str) -> tuple[Any, ...]:
    # Cached: a GRPO group scores many completions against one gold answer (sympy objects are immutable).
    for candidate in _gold_candidates(text):
        gold = _parse(candidate)
        if gold:
            return tuple(gold)
    raise ValueError(f"math reward: gold answer {text!r:.200} does not parse as LaTeX or as an expression; "
                     "fix the dataset row (give the final answer only, e.g. '\\\\frac{3}{4}' or '0.75')")


def _gold_candidates(text: str) -> list[str]:
    number = _CURRENCY.sub("", text)
    if number != text and _PLAIN_NUMBER.fullmatch(number):
        return [number]
    if any(d in text for d in _LATEX_DELIMITERS):
        return [text]
    wrapped = f"${text}$"
    if _PLAIN_NUMBER.fullmatch(text) and not _is_list(text):
        return [text, wrapped]
    return [wrapped, text]


def _is_list(text: str) -> bool:
    """'1, 2, 3' or '1,2,3' is a list; '7,425,000' (thousands) and '1,22' (decimal comma) are numbers."""
    return bool(re.search(r",\s", text)) or (text.count(",") > 1 and not _THOUSANDS.fullmatch(text))


def _text(value: Any) -> str:
    try:
        return str(value)[:300]
    except ValueError:  # an integer past Python's 4,300-digit str() limit
        return f"<{type(value).__name__} too long to print>"


def _zero(reason: str, gold: list[Any], parsed: Any = None) -> RewardResult:
    return RewardResult(0.0, {"parsed": None if parsed is None else _text(parsed), "gold": _text(gold[0]),
                              "reason": reason})


@reward_spec(required=("answer",))
def math_reward(completion: str, *, answer: str | int | float, numeric_only: bool = False,
                **row: Any) -> RewardResult:
    """1.0 if the completion's final answer is mathematically equivalent to `answer`, else 0.0.

    numeric_only: count the answer only when it is a number literal. math-verify evaluates an
    extracted expression, so restating the question ("What is 3 - 7?" -> "3 - 7") would score 1.0;
    arithmetic tasks set this to stop GRPO from learning to echo the question.
    details: {"parsed": prediction as sympy text or None, "gold": gold as sympy text}, plus "reason"
    when the score is 0 for want of a comparable answer (none found, refused by a cap, out of time).
    """
    gold = parse_gold(answer)
    _, answer_part = split_thinking(completion)
    window = answer_window(answer_part)
    refusal = text_refusal(window)
    if refusal:
        return _zero(refusal, gold)
    try:
        with time_budget(TIME_BUDGET_S):
            return _score(window, gold, numeric_only)
    except OutOfTime:
        return _zero(f"out of time ({TIME_BUDGET_S} s)", gold)


def _score(window: str, gold: list[Any], numeric_only: bool) -> RewardResult:
    predicted = _parse(window)
    if not predicted:
        # Malformed model output (no extractable answer, or an unclosed think block): score 0.
        return _zero("no answer found", gold)
    refusal = expr_refusal(predicted[0], str(predicted[-1]))
    if refusal:
        return _zero(refusal, gold, predicted[-1])
    if numeric_only and not _NUMBER_LITERAL.fullmatch(str(predicted[-1]).strip()):
        return _zero("answer is an expression, not a number", gold, predicted[-1])
    correct = _equivalent(gold, predicted, window)
    return RewardResult(1.0 if correct else 0.0, {"parsed": _text(predicted[0]), "gold": _text(gold[0])})


def _equivalent(gold: list[Any], predicted: list[Any], window: str) -> bool:
    if _verify(gold, predicted):
        return True
    for reading in (_imaginary_unit, _function_notation):
        pair = reading(gold, predicted)
        if pair and _verify(*pair):
            return True
    return _as_set(gold, window)


def _exprs(items: list[Any]) -> list[sympy.Basic]:
    return [item for item in items if isinstance(item, sympy.Basic)]


def _imaginary_unit(gold: list[Any], predicted: list[Any]) -> tuple[list, list] | None:
    """Both sides with the symbol `i` replaced by the imaginary unit, or None without an `i`.

    latex2sympy reads `i` as a plain symbol (`I` alone is the unit), so 3+4i matches 4i+3 but not
    i(4-3i), which is 4i+3 only with i^2 = -1. A final answer that uses `i` means the unit; the same
    substitution on both sides keeps equal answers equal."""
    def unit(items: list[sympy.Basic]) -> list[sympy.Basic]:
        return [e.xreplace({s: sympy.I for s in e.free_symbols if getattr(s, "name", "") == "i"}) for e in items]

    g, p = _exprs(gold), _exprs(predicted)
    if not any(getattr(s, "name", "") == "i" for e in g + p for s in e.free_symbols):
        return None
    return unit(g), unit(p)


def _function_notation(gold: list[Any], predicted: list[Any]) -> tuple[list, list] | None:
    """Both sides' right-hand sides when one answer defines f(x) and the other y (or f(x)): math-verify
    compares f(x) = 2x+1 and y = 2x+1 as equations in different unknowns. Two plain assignments (x = 1
    against y = 1) stay different, as math-verify intends; None when the reading does not apply."""
    g, p = _exprs(gold), _exprs(predicted)
    kinds = {_definition(e) for e in g[:1] + p[:1]}
    if not (g and p) or None in kinds or "function" not in kinds:
        return None
    return [g[0].rhs], [p[0].rhs]


def _definition(expr: sympy.Basic) -> str | None:
    if not isinstance(expr, sympy.Eq):
        return None
    lhs = expr.lhs
    if isinstance(lhs, AppliedUndef) and all(isinstance(a, sympy.Symbol) for a in lhs.args):
        return "function"
    if isinstance(lhs, sympy.Symbol) and lhs not in expr.rhs.free_symbols:
        return "symbol"
    return None


def _as_set(gold: list[Any], window: str) -> bool:
    """For a gold set of several elements, the prediction read as a set: the contents of all its
    `\\boxed{}` ("x = \\boxed{2} ... and x = \\boxed{3}"), or a plain list that ends the answer ("1, 2, 3").
    math-verify reads only the last box (or at most 5 joined by "and"/","), or the last number."""
    if not (isinstance(gold[0], sympy.FiniteSet) and len(gold[0]) > 1):
        return False
    readings = []
    boxes = _boxed_contents(window)
    if len(boxes) > 1:
        readings.append(", ".join(boxes))
    trailing = _TRAILING_LIST.search(window[-300:])
    if trailing:
        readings.append(re.sub(r"\band\b", "", trailing.group(1)))
    for reading in readings:
        predicted = _parse(f"${reading}$")
        if predicted and expr_refusal(predicted[0], reading) is None and _verify(gold, predicted):
            return True
    return False


def _boxed_contents(text: str) -> list[str]:
    """The contents of every closed `\\boxed{...}` (braces balanced), in order."""
    contents, start = [], text.find("\\boxed{")
    while start >= 0:
        depth, i = 0, start + len("\\boxed")
        for i in range(i, len(text)):
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            if depth == 0:
                contents.append(text[start + len("\\boxed{"):i])
                break
        start = text.find("\\boxed{", i + 1)
    return contents
