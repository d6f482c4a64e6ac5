"""math_reward: math-verify equivalence of the completion's answer with the gold answer (CPU, ~2 s)."""
from __future__ import annotations

import threading

import pytest

from rewards.base import required_fields
from rewards.math import math_reward, parse_gold
from rewards.registry import get_reward


def score(completion: str, answer: str | int | float) -> float:
    return math_reward(completion, answer=answer).score


@pytest.mark.parametrize("completion, gold", [
    ("So the result is \\boxed{\\frac{3}{4}}.", "0.75"),
    ("So the result is \\boxed{0.75}.", "\\frac{3}{4}"),
    ("The answer is 3/4", "3/4"),
    ("We get $\\dfrac{3}{4}$", "$\\frac{3}{4}$"),
    ("The answer is 42.", "42"),
    ("The answer is 42.", 42),
    ("First 3 apples, then 5 more, so 8", "8"),                  # last number
    ("Thus $x = 2$.", "$x=2$"),
    ("\\boxed{2}", "x=2"),
    ("The solution set is $(1, 2]$", "(1,2]"),
    ("$x \\in (-\\infty, 3)$", "(-\\infty, 3)"),
    ("\\boxed{\\{2, 1\\}}", "\\{1,2\\}"),
    ("\\boxed{2\\sqrt{3}}", "\\sqrt{12}"),
    ("\\boxed{x^2 + 2x + 1}", "(x+1)^2"),
    ("It costs $7,425,000 in total: 7,425,000", "7425000"),
    ("The final answer is $\\boxed{-5}$", "-5"),
    ("\\boxed{\\frac{\\pi}{4}}", "\\dfrac{\\pi}{4}"),
])
def test_equivalent_answers_score_one(completion: str, gold: str) -> None:
    assert score(completion, gold) == 1.0


@pytest.mark.parametrize("completion, gold", [
    ("So the result is \\boxed{\\frac{2}{3}}.", "0.75"),
    ("The answer is 41.", "42"),
    ("The solution set is $[1, 2]$", "(1,2]"),
    ("$x \\in (-\\infty, 3]$", "(-\\infty, 3)"),
    ("\\boxed{\\{1, 2, 3\\}}", "\\{1,2\\}"),
    ("\\boxed{x^2 + 1}", "(x+1)^2"),
    ("\\boxed{5}", "-5"),
    ("\\boxed{0.7}", "3/4"),
])
def test_wrong_answers_score_zero(completion: str, gold: str) -> None:
    assert score(completion, gold) == 0.0


def test_boxed_answer_wins_over_later_numbers() -> None:
    assert score("The answer is \\boxed{2}. Checking: 3 is not it.", "2") == 1.0
    assert score("The answer is \\boxed{2}. Checking: 3 is not it.", "3") == 0.0


def test_no_answer_scores_zero_with_reason() -> None:
    result = math_reward("I do not know.", answer="42")
    assert result.score == 0.0
    assert result.details["parsed"] is None and result.details["reason"] == "no answer found"
    assert score("", "42") == 0.0


def test_details_hold_parsed_prediction_and_gold() -> None:
    result = math_reward("\\boxed{\\frac{3}{4}}", answer="0.75")
    assert result.details == {"parsed": "3/4", "gold": "0.750000000000000"}


def test_thinking_block_is_ignored() -> None:
    # The thought mentions a wrong boxed answer; only the answer after </think> counts.
    assert score("<think>maybe \\boxed{7}?</think>\n\nThe answer is \\boxed{8}.", "8") == 1.0
    assert score("<think>it is \\boxed{8}</think>\n\nThe answer is \\boxed{7}.", "8") == 0.0
    # An unclosed think block has no answer part.
    assert score("<think>the answer is \\boxed{8} but I keep thinking", "8") == 0.0


def test_unparsable_gold_raises_a_clear_error() -> None:
    with pytest.raises(ValueError, match="does not parse"):
        math_reward("\\boxed{1}", answer="")
    with pytest.raises(TypeError, match="must be a string or number"):
        math_reward("\\boxed{1}", answer=[1, 2])


def test_plain_number_gold_is_read_as_a_number_not_a_set() -> None:
    # "1,22" is a decimal comma (math-verify's expression reading), not the set {1, 22}.
    assert str(parse_gold("1,22")[0]) == "1.22000000000000"
    assert str(parse_gold("\\{1,22\\}")[0]) == "{1, 22}"


def test_works_outside_the_main_thread() -> None:
    # math-verify's default signal.alarm timeout raises in threads; ours must not.
    results: list[float] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(score("The answer is \\boxed{\\frac{1}{2}}", "0.5"))
            results.append(score("The answer is \\boxed{3}", "0.5"))
        except BaseException as exc:  # reported below, so a failure in the thread fails the test
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    assert not errors, errors
    assert results == [1.0, 0.0]


def test_registered_as_builtin_with_required_answer() -> None:
    fn = get_reward("math")
    assert fn is math_reward
    assert required_fields(fn) == ("answer",)
    assert fn("\\boxed{3/4}", answer="0.75").score == 1.0


def test_numeric_only_refuses_an_echoed_expression():
    from rewards import get_reward

    strict = get_reward("math", numeric_only=True)
    assert get_reward("math")("3 - 7", answer="-4").score == 1.0  # math-verify evaluates the expression
    assert strict("3 - 7", answer="-4").score == 0.0
    assert strict("3 - 7 = -4", answer="-4").score == 1.0
    assert strict("The answer is -4.", answer="-4").score == 1.0
    assert strict("12/3", answer="4").score == 0.0


# Answer forms math-verify alone gets wrong (issue 15), each with near misses that must score 0.
# (category, completion, gold, expected score)
ANSWER_FORMS = [
    ("set", "The answer is \\boxed{1, 2, 3}", "\\{1,2,3\\}", 1),
    ("set", "The roots are 1, 2, and 3.", "\\{1,2,3\\}", 1),
    ("set", "\\boxed{3, 2, 1}", "1, 2, 3", 1),
    ("set", "\\boxed{\\{3, 2, 1\\}}", "1,2,3", 1),
    ("set", "\\boxed{1, 2, 4}", "\\{1,2,3\\}", 0),
    ("set", "The roots are 1, 2, and 4.", "1, 2, 3", 0),
    ("set", "\\boxed{1, 2}", "1, 2, 3", 0),
    ("set", "\\boxed{1, 2, 3, 4}", "1, 2, 3", 0),
    ("boxes", "So $x=\\boxed{2}$ or $x=\\boxed{3}$.", "2, 3", 1),
    ("boxes", "\\boxed{3}, \\boxed{2}", "2, 3", 1),
    ("boxes", "One root is \\boxed{2}. Checking the discriminant again, the other is \\boxed{3}.", "2, 3", 1),
    ("boxes", "\\boxed{2} and \\boxed{4}", "2, 3", 0),
    ("boxes", "One root is \\boxed{2}. Checking again, the other is \\boxed{2}.", "2, 3", 0),
    ("boxes", "\\boxed{2}", "2, 3", 0),
    ("currency", "\\boxed{18.9}", "\\$18.90", 1),
    ("currency", "The answer is 18.9", "$18.90", 1),
    ("currency", "\\boxed{18.9}", "18.90 dollars", 1),
    ("currency", "\\boxed{\\$18.90}", "18.9", 1),
    ("currency", "\\boxed{18.90\\text{ dollars}}", "18.9", 1),
    ("currency", "\\boxed{18.09}", "\\$18.90", 0),
    ("currency", "\\boxed{19}", "18.90 dollars", 0),
    ("complex", "\\boxed{4i+3}", "3+4i", 1),
    ("complex", "\\boxed{i(4-3i)}", "3+4i", 1),
    ("complex", "\\boxed{3+4i}", "i(4-3i)", 1),
    ("complex", "\\boxed{3 + 4\\mathrm{i}}", "3+4i", 1),
    ("complex", "\\boxed{3 + 4\\imath}", "3+4i", 1),
    ("complex", "\\boxed{4+3i}", "3+4i", 0),
    ("complex", "\\boxed{i(4+3i)}", "3+4i", 0),
    ("complex", "\\boxed{3 + 4\\mathrm{i}}", "7", 0),  # math-verify alone drops \mathrm{i}: 3 + 4 = 7
    ("constant", "\\boxed{2\\mathrm{e}}", "2e", 1),
    ("constant", "\\boxed{1 - \\frac{1}{\\mathrm{e}}}", "1 - \\frac{1}{e}", 1),
    ("constant", "\\boxed{2\\mathrm{e}}", "2", 0),  # math-verify alone drops \mathrm{e}: 2
    ("constant", "\\boxed{1 + \\frac{1}{\\mathrm{e}}}", "1 - \\frac{1}{e}", 0),
    ("trig", "\\boxed{\\sin^2 x + \\cos^2 x}", "1", 1),
    ("trig", "\\boxed{1}", "\\sin^2 x + \\cos^2 x", 1),
    ("trig", "\\boxed{2\\sin x\\cos x}", "\\sin 2x", 1),
    ("trig", "\\boxed{\\sin 2x}", "2\\sin x \\cos x", 1),
    ("trig", "\\boxed{\\sin^2 x - \\cos^2 x}", "1", 0),
    ("trig", "\\boxed{\\sin x\\cos x}", "\\sin 2x", 0),
    ("function", "\\boxed{f(x) = 2x+1}", "y = 2x+1", 1),
    ("function", "\\boxed{f(x) = 2x+1}", "2x+1", 1),
    ("function", "\\boxed{y = 2x+1}", "f(x) = 2x+1", 1),
    ("function", "\\boxed{2x+1}", "f(x)=2x+1", 1),
    ("function", "\\boxed{f(x) = 2x+2}", "y = 2x+1", 0),
    ("function", "\\boxed{f(x) = 2x+2}", "2x+1", 0),
    ("function", "\\boxed{y = 1}", "x = 1", 0),  # two assignments: the unknown matters (math-verify's rule)
    ("matrix", "\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", 1),
    ("matrix", "$\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}$", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 1),
    ("matrix", "\\boxed{\\begin{pmatrix}1&2\\\\3&5\\end{pmatrix}}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", 0),
    ("matrix", "\\boxed{\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", 0),
]


@pytest.mark.parametrize("category, completion, gold, expected", ANSWER_FORMS)
def test_answer_forms(category, completion, gold, expected):
    assert score(completion, gold) == expected


def math_verify_alone(completion: str, gold: str) -> float:
    """math-verify with its defaults, gold as given (what a project without our gold reading gets)."""
    import math_verify
    parse = lambda text: math_verify.parse(text, parsing_timeout=None)  # no signal.alarm: pytest-timeout owns it
    return float(math_verify.verify(parse(gold), parse(completion), timeout_seconds=None))


def test_answer_forms_at_least_as_good_as_math_verify_alone():
    ours = sum(score(c, g) == e for _, c, g, e in ANSWER_FORMS)
    alone = sum(math_verify_alone(c, g) == e for _, c, g, e in ANSWER_FORMS)
    assert ours == len(ANSWER_FORMS) and alone < ours
