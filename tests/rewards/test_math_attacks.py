"""math_reward on inputs a policy could use to stall it (issue 15): each scores 0 within 1 s, in the main
thread and in a worker thread. The caps of rewards/math_guard.py refuse them before the expensive step
(no timer stops a C-level big-integer power); the watchdog time budget ends the rest. Before, most ran
past 10 s (docs/rewards.md, "`math`: bounded cost and answer forms").
"""
from __future__ import annotations

import signal
import threading
import time

import pytest

import rewards.math as math_module
from rewards.math import math_reward
from rewards.math_guard import MAX_ANSWER_CHARS, answer_window, expr_refusal, text_refusal

LIMIT_S = 1.0

ATTACKS = {
    # exponent towers and huge numbers: sympy evaluates them in verify, in uninterruptible C code
    "tower_latex": "\\boxed{9^{9^{9^{9}}}}",
    "tower_python": "The answer is 2**2**2**2**2**2",
    "tower_caret": "The answer is 9^9^9^9",
    "power_of_power": "\\boxed{10^{10^{10}}}",
    "negative_power": "\\boxed{2^{-10^{9}}}",
    "factorial": "\\boxed{(10^{6})!}",
    "binomial": "\\boxed{\\binom{100000}{50000}}",
    "long_sum": "\\boxed{\\sum_{k=1}^{10^{9}} k^{k}}",
    "symbolic_power": "\\boxed{(x+1)^{5000}}",
    # length: some extraction regexes are quadratic in the text
    "million_chars": "1+" * 500_000 + "1",
    "million_digits": "\\boxed{" + "9" * 1_000_000 + "}",
    "million_openers": "\\(" * 500_000,
    "million_brackets": "\\[1" * 300_000,
    "million_numbers": "1 " * 500_000,
    # nesting: ANTLR's full-context prediction costs ~0.1 s per level, verify far more
    "nested_braces": "\\boxed{" + "{" * 5000 + "1" + "}" * 5000 + "}",
    "nested_parens": "\\boxed{" + "(" * 50 + "5" + ")" * 50 + "}",
    "nested_exponents": "\\boxed{" + "x^{" * 30 + "2" + "}" * 30 + "}",
    "nested_fractions": "\\boxed{" + "\\frac{1}{" * 500 + "2" + "}" * 500 + "}",
    "nested_mixed": "$((((({[(6)]})))))$",
    # unclosed and repeated delimiters
    "unclosed_boxed": "\\boxed{" + "x+" * 20_000,
    "unclosed_boxed_nested": "\\boxed{" * 100_000,
    "many_boxed": "\\boxed{1} " * 100_000,
    "many_dollars": "$1$ and " * 100_000,
    "huge_answer_in_boxed": "\\boxed{" + "+".join(f"x_{{{i}}}" for i in range(3000)) + "}",
}


@pytest.fixture(scope="module", autouse=True)
def warm_up():
    # Imports and the first parse (regex compilation, ANTLR tables) are not what is measured.
    math_reward("\\boxed{(1, 2]} and $x^{2}$", answer="5")


def timed(completion: str) -> tuple[float, float, dict]:
    start = time.perf_counter()
    result = math_reward(completion, answer="5")
    return result.score, time.perf_counter() - start, result.details


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_zero_quickly_in_the_main_thread(name):
    score, elapsed, details = timed(ATTACKS[name])
    assert score == 0.0, details
    assert elapsed < LIMIT_S, f"{name}: {elapsed:.2f} s ({details})"


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_scores_zero_quickly_in_a_worker_thread(name):
    out: list = []

    def run() -> None:
        try:
            out.append(timed(ATTACKS[name]))
        except BaseException as exc:  # reported below, so an error in the thread fails the test
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=120)
    assert out and not isinstance(out[0], BaseException), out
    score, elapsed, details = out[0]
    assert score == 0.0, details
    assert elapsed < LIMIT_S, f"{name}: {elapsed:.2f} s ({details})"


@pytest.mark.parametrize("completion, gold", [
    ("\\boxed{2^{100}}", "1267650600228229401496703205376"),
    ("\\boxed{2^{2^{2^{2}}}}", "65536"),
    ("The answer is 2**2**2**2", "65536"),
    ("\\boxed{3^{2023}}", "3^{2023}"),
    ("\\boxed{1000!}", "1000!"),
    ("\\boxed{\\binom{10}{3}}", "120"),
    ("\\boxed{\\sum_{k=1}^{10} k}", "55"),
    ("\\boxed{(x+1)^{2}}", "x^2+2x+1"),
    ("\\boxed{10^{\\frac{\\sqrt{13} - 5}{6}}}", "10^{(\\sqrt{13}-5)/6}"),
    ("\\boxed{\\frac{1}{\\sqrt{\\left(x^{2}+1\\right)}}}", "(x^2+1)^{-1/2}"),
    ("\\boxed{\\left(\\frac{\\sqrt{2}}{2}, -\\frac{\\sqrt{2}}{2}\\right)}", "(\\frac{1}{\\sqrt{2}}, -\\frac{1}{\\sqrt{2}})"),
])
def test_big_but_reasonable_answers_still_score(completion, gold):
    assert math_reward(completion, answer=gold).score == 1.0


def test_near_misses_of_big_answers_score_zero():
    assert math_reward("\\boxed{2^{100}+1}", answer="2^{100}").score == 0.0
    assert math_reward("\\boxed{2^{2^{2^{2}}}}", answer="65537").score == 0.0
    assert math_reward("\\boxed{999!}", answer="1000!").score == 0.0


def test_refusals_say_why():
    assert "nested" in math_reward(ATTACKS["nested_parens"], answer="5").details["reason"]
    assert "digits" in math_reward(ATTACKS["tower_latex"], answer="5").details["reason"]
    assert "binomial" in (text_refusal(ATTACKS["binomial"]) or "")
    assert expr_refusal(None, "x" * 5000) is not None


def test_the_window_keeps_a_boxed_answer_followed_by_a_long_check():
    text = "So \\boxed{42}." + " Let me double-check every step once more." * 200
    assert len(answer_window(text)) == MAX_ANSWER_CHARS and answer_window(text).startswith("\\boxed{42}")
    assert math_reward(text, answer="42").score == 1.0
    assert math_reward("x" * 10_000 + " The answer is 42.", answer="42").score == 1.0


def slow_verify(gold, predicted):
    deadline = time.perf_counter() + 30
    while time.perf_counter() < deadline:  # Python bytecode, as sympy's simplify is: interruptible
        pass
    return True


def in_thread(fn):
    out: list = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join(timeout=60)
    return out[0]


@pytest.mark.parametrize("where", ["main thread", "worker thread"])
def test_the_time_budget_ends_a_slow_comparison(monkeypatch, where):
    monkeypatch.setattr(math_module, "_verify", slow_verify)

    def run():
        start = time.perf_counter()
        return math_reward("\\boxed{5}", answer="5"), time.perf_counter() - start

    result, elapsed = run() if where == "main thread" else in_thread(run)
    assert result.score == 0.0 and "out of time" in result.details["reason"]
    assert elapsed < LIMIT_S
    monkeypatch.undo()
    time.sleep(0.1)  # nothing raised late, after the reward returned
    assert math_reward("\\boxed{\\frac{10}{4}}", answer="5/2").score == 1.0  # the parser still works


def test_signals_and_timers_of_others_are_left_alone():
    # pytest-timeout arms SIGALRM around every test; math-verify's own timeouts would cancel it.
    handler, timer = signal.getsignal(signal.SIGALRM), signal.getitimer(signal.ITIMER_REAL)[0]
    assert math_reward("\\boxed{5}", answer="5").score == 1.0
    assert signal.getsignal(signal.SIGALRM) is handler
    assert (signal.getitimer(signal.ITIMER_REAL)[0] > 0) == (timer > 0)


def test_many_budgets_in_a_row_leave_no_stray_exception():
    for i in range(200):
        assert math_reward(f"\\boxed{{{i}}}", answer=str(i)).score == 1.0
