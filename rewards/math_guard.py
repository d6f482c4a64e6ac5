"""Caps and a time budget that keep the math reward's cost bounded on adversarial completions.

math-verify (regexes, an ANTLR LaTeX parser, sympy) has inputs whose cost explodes: exponent towers
(`9^{9^{9^{9}}}` is evaluated by sympy in `verify` as a C-level big-integer power that no signal can
interrupt), deeply nested groups (ANTLR's full-context prediction: ~0.1 s per level of `((...))`,
minutes at depth 20), long texts (some extraction regexes are quadratic: 8,000 `\\[` take 2 s) and
big evaluated terms (`\\binom{100000}{50000}` is computed while parsing). A policy finds such inputs,
and each costs a reward timeout plus a worker restart. The caps below refuse them before the expensive
step; `time_budget` ends what is left (sympy's simplify on a mid-sized expression, say) after
TIME_BUDGET_S, in any thread. Measured on the 2-core dev machine under load:
docs/rewards.md ("`math`: bounded cost and answer forms").
"""
from __future__ import annotations

import ctypes
import math
import re
import threading
from contextlib import contextmanager
from typing import Any, Iterator

from sympy import Add, Basic, Float, MatrixBase, Pow, Product, Rational, Sum, binomial, factorial

MAX_ANSWER_CHARS = 2000
"""Characters of the answer part that are parsed: the last ones, or from the last `\\boxed{` on."""
MAX_GROUP_DEPTH = 4
"""Nesting of `(`, `[`, `{` groups that are not a command's argument (`\\frac{`, `\\sqrt{`, `\\boxed{`)."""
MAX_BRACKET_DEPTH = 12
"""Nesting of all brackets, command arguments included (`\\frac{1}{\\frac{1}{...}}`)."""
MAX_EXTRACTED_CHARS = 1000
"""Length of the extracted answer that is compared (math-verify's own tests: at most 90)."""
MAX_NODES = 200
"""sympy nodes of a parsed answer (math-verify's own tests: at most 33)."""
MAX_TREE_DEPTH = 24
"""Depth of a parsed answer's sympy tree (math-verify's own tests: at most 8)."""
MAX_LOG10 = 100_000
"""Decimal digits any numeric subterm may reach once evaluated (such a number compares in milliseconds;
9^{9^{9^{9}}} has about 3.7e8 digits)."""
MAX_SYMBOLIC_EXPONENT = 50
"""Exponent on a base that holds a sum: `(x+1)^{100}` expands to 101 terms in simplify (~0.3 s)."""
MAX_RANGE = 10_000
"""Terms of a sum or product with numeric bounds."""
TIME_BUDGET_S = 0.6
"""Wall clock for parsing and comparing one prediction (the gold answer's parse is cached apart)."""

_BOXED = "\\boxed{"
_COMMAND_BRACE = re.compile(r"\\[A-Za-z]+\s*$")
_BINOMIAL = re.compile(r"\\[dt]?binom|\\choose")
_BIG_ARGUMENT = re.compile(r"\d{5}|\^")


def answer_window(answer: str) -> str:
    """The part of `answer` that is parsed: its last MAX_ANSWER_CHARS characters, or, when the last
    `\\boxed{` lies before them, MAX_ANSWER_CHARS characters from that `\\boxed{` (math-verify prefers a
    boxed answer wherever it is, so a long check after it must not push it out)."""
    if len(answer) <= MAX_ANSWER_CHARS:
        return answer
    start = len(answer) - MAX_ANSWER_CHARS
    boxed = answer.rfind(_BOXED)
    if 0 <= boxed < start:
        return answer[boxed:boxed + MAX_ANSWER_CHARS]
    return answer[start:]


def text_refusal(window: str) -> str | None:
    """Why `window` must not reach the parser (bracket nesting, big binomials), or None."""
    group, total = _bracket_depths(window)
    if group > MAX_GROUP_DEPTH or total > MAX_BRACKET_DEPTH:
        return (f"brackets nested too deeply ({group} groups, {total} in all; caps {MAX_GROUP_DEPTH}, "
                f"{MAX_BRACKET_DEPTH})")
    for match in _BINOMIAL.finditer(window):
        # latex2sympy evaluates binomials while parsing; only small literal arguments are safe.
        if _BIG_ARGUMENT.search(window, match.end(), match.end() + 40):
            return "binomial with a big or computed argument"
    return None


def _bracket_depths(text: str) -> tuple[int, int]:
    """(deepest nesting of plain groups, deepest nesting of all brackets). A brace that opens a
    command's argument (`\\frac{`, `\\sqrt{`, and the `}{` of a second argument) is cheap to parse
    (the command fixes the grammar rule) and counts only in the second figure."""
    stack: list[bool] = []  # True for a plain group
    group = deepest_group = deepest = 0
    for i, char in enumerate(text):
        if char in "([{":
            plain = not (char == "{" and (text[i - 1:i] == "}" or _COMMAND_BRACE.search(text, max(0, i - 20), i)))
            stack.append(plain)
            group += plain
            deepest_group, deepest = max(deepest_group, group), max(deepest, len(stack))
        elif char in ")]}" and stack:
            group -= stack.pop()
    return deepest_group, deepest


class Refused(Exception):
    """A parsed answer too big to compare safely."""


def expr_refusal(expr: Any, extracted: str = "") -> str | None:
    """Why a parsed answer must not be compared (size, depth, magnitude), or None. Checked on the
    unevaluated sympy tree that math-verify's parser returns, before `verify` evaluates it."""
    if len(extracted) > MAX_EXTRACTED_CHARS:
        return f"answer of {len(extracted)} characters (cap {MAX_EXTRACTED_CHARS})"
    if not isinstance(expr, (Basic, MatrixBase)):
        return None
    try:
        _log10(expr, depth=0, budget=[MAX_NODES])
    except Refused as refusal:
        return str(refusal)
    return None


def _log10(expr: Any, depth: int, budget: list[int]) -> float | None:
    """An upper bound of log10 of the size of `expr`'s numbers once evaluated (digits of numerator or
    denominator), None where it is symbolic; raises Refused past a cap."""
    budget[0] -= 1
    if budget[0] < 0:
        raise Refused(f"answer of more than {MAX_NODES} terms")
    if depth > MAX_TREE_DEPTH:
        raise Refused(f"answer nested more than {MAX_TREE_DEPTH} levels")
    if isinstance(expr, MatrixBase):
        children = list(expr)
    elif isinstance(expr, Basic):
        children = list(expr.args)
    else:
        return None
    sizes = [_log10(child, depth + 1, budget) for child in children]
    size = _own_log10(expr, children, sizes)
    if size is not None and size > MAX_LOG10:
        raise Refused(f"number of about 10^{size:.3g} digits (cap {MAX_LOG10} digits)")
    return size


def _own_log10(expr: Any, children: list, sizes: list[float | None]) -> float | None:
    if isinstance(expr, Rational):  # Integer too
        return max(_int_log10(expr.p), _int_log10(expr.q))
    if isinstance(expr, Float) or getattr(expr, "is_NumberSymbol", False):
        return 1.0  # floats keep their precision; pi and e evaluate to it
    if isinstance(expr, Pow):
        return _pow_log10(expr, sizes)
    if isinstance(expr, factorial) and sizes[0] is not None:
        n = _value_bound(children[0], sizes[0])
        return n * math.log10(max(n, 2.0))
    if isinstance(expr, binomial) and sizes[0] is not None:
        return _value_bound(children[0], sizes[0]) * math.log10(2.0)
    if isinstance(expr, (Sum, Product)):
        _check_range(expr)
    if not sizes or any(s is None for s in sizes):
        return None
    return sum(sizes) + 1.0  # a sum or product of numbers: at most the digits of all, plus a carry


def _pow_log10(expr: Pow, sizes: list[float | None]) -> float | None:
    base, exponent = sizes
    if exponent is None:
        return None
    power = _value_bound(expr.exp, exponent)
    if base is None:
        if expr.base.has(Add) and power > MAX_SYMBOLIC_EXPONENT:
            raise Refused(f"power {power:.3g} of a sum (cap {MAX_SYMBOLIC_EXPONENT})")
        return None
    return power * max(base, 0.0) + 1.0


def _check_range(expr: Sum | Product) -> None:
    # sympy adds the terms one by one when it finds no closed form.
    for limit in expr.limits:
        ends = [_log10(end, 0, [MAX_NODES]) for end in limit[1:]]
        if any(end is not None and end > math.log10(MAX_RANGE) for end in ends):
            raise Refused(f"sum or product of more than {MAX_RANGE} terms")


def _value_bound(expr: Any, log10: float) -> float:
    """An upper bound of |expr| for a numeric `expr` whose size bound is `log10`: its value when that
    is cheap to compute (sizes add up loosely, and 10^((sqrt(13)-5)/6) must not count as a huge power),
    else 10^log10."""
    if log10 > 15:
        return math.inf
    try:
        return abs(complex(expr.evalf(15)))
    except (TypeError, ValueError, AttributeError):
        return 10.0 ** log10


def _int_log10(value: int) -> float:
    return abs(value).bit_length() * math.log10(2.0)


class OutOfTime(BaseException):
    """Raised by `time_budget` in the thread it guards. A BaseException so that math-verify's
    `except Exception` (which turns errors into "no match" and goes on to the next candidate) lets it
    through."""


@contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    """Raise OutOfTime in the block once it has run `seconds` of wall clock, in any thread.

    A watchdog timer thread raises it asynchronously in the guarded thread (CPython's
    PyThreadState_SetAsyncExc), which receives it at its next bytecode, in Python code, so it ends
    sympy's simplify or ANTLR's prediction but not one C-level big-integer operation: the caps above
    keep those small. Not signals: math-verify's own `parsing_timeout`/`timeout_seconds` use
    signal.alarm, which raises outside the main thread (Ray runs tasks in threads), counts whole seconds
    (at least 1 s per parse and per comparison, more than the 1 s wanted in all) and cancels any outer
    timer (pytest-timeout's, a harness's).
    """
    target, lock = threading.get_ident(), threading.Lock()
    state = {"active": True, "fired": False}

    def expire() -> None:
        with lock:
            if state["active"]:
                state["fired"] = True
                _raise_in(target, OutOfTime)

    timer = threading.Timer(seconds, expire)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()
        with lock:
            state["active"] = False
            if state["fired"]:
                _raise_in(target, None)  # withdraw a raise not yet delivered: it must not land after the block


def _raise_in(thread_id: int, exception: type[BaseException] | None) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id),
                                               None if exception is None else ctypes.py_object(exception))
