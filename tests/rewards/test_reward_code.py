"""The code reward: real HumanEval problems, stdin/stdout judging, the pure helpers. The sandbox under
attack is tests/rewards/test_reward_code_attacks.py.
Run: .venv/bin/python -m pytest tests/rewards/test_reward_code.py
"""
from __future__ import annotations

import pytest

from rewards.code import build_program, code_reward, extract_code, normalize_output, parse_tests
from rewards.registry import get_reward

# --- HumanEval/0 and HumanEval/2, verbatim (prompt, canonical_solution, test, entry_point) --------
HE0_PROMPT = '''from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """ Check if in given list of numbers, are any two numbers closer to each other than
    given threshold.
    >>> has_close_elements([1.0, 2.0, 3.0], 0.5)
    False
    >>> has_close_elements([1.0, 2.8, 3.0, 4.0, 5.0, 2.0], 0.3)
    True
    """
'''
HE0_SOLUTION = '''    for idx, elem in enumerate(numbers):
        for idx2, elem2 in enumerate(numbers):
            if idx != idx2:
                distance = abs(elem - elem2)
                if distance < threshold:
                    return True

    return False
'''
HE0_TEST = '''

METADATA = {
    'author': 'jt',
    'dataset': 'test'
}


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.95) == True
    assert candidate([1.0, 2.0, 5.9, 4.0, 5.0], 0.8) == False
    assert candidate([1.0, 2.0, 3.0, 4.0, 5.0, 2.0], 0.1) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 1.0) == True
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False

'''
HE2_PROMPT = '''

def truncate_number(number: float) -> float:
    """ Given a positive floating point number, it can be decomposed into
    and integer part (largest integer smaller than given number) and decimals
    (leftover part always smaller than 1).

    Return the decimal part of the number.
    >>> truncate_number(3.5)
    0.5
    """
'''
HE2_SOLUTION = "    return number % 1.0\n"
HE2_TEST = '''

METADATA = {
    'author': 'jt',
    'dataset': 'test'
}


def check(candidate):
    assert candidate(3.5) == 0.5
    assert abs(candidate(1.33) - 0.33) < 1e-6
    assert abs(candidate(123.456) - 0.456) < 1e-6
'''
HE0 = {"prompt": HE0_PROMPT, "test": HE0_TEST, "entry_point": "has_close_elements", "task_id": "HumanEval/0"}
HE2 = {"prompt": HE2_PROMPT, "test": HE2_TEST, "entry_point": "truncate_number", "task_id": "HumanEval/2"}

ADD_TESTS = ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"]
FAST = {"timeout_s": 1.0}


# --- Positive cases -----------------------------------------------------------------------------

def test_humaneval_canonical_solutions_score_one():
    for row, solution in ((HE0, HE0_SOLUTION), (HE2, HE2_SOLUTION)):
        result = code_reward(solution, **row)  # body only: the prompt is prepended
        assert result.score == 1.0, result.details
        assert result.details["total"] == 1  # check(candidate) counts as one test


def test_humaneval_wrong_solution_scores_zero():
    result = code_reward("    return number // 1.0\n", **HE2)
    assert result.score == 0.0
    assert result.details["failures"][0]["reason"].startswith("AssertionError")


def test_humaneval_full_function_in_a_fence_keeps_prompt_imports():
    # Uses List without importing it: the prompt's `from typing import List` must be kept.
    completion = ("Here you go:\n```python\n"
                  "def has_close_elements(numbers: List[float], threshold: float) -> bool:\n"
                  "    s = sorted(numbers)\n    return any(b - a < threshold for a, b in zip(s, s[1:]))\n```\n"
                  "It sorts first.")
    assert code_reward(completion, **HE0).score == 1.0


def test_half_right_scores_half_and_asserts_run_separately():
    completion = "def add(a, b):\n    return a + b if a > 0 else 7\n"
    result = code_reward(completion, tests=ADD_TESTS)
    assert result.score == 0.5
    assert result.details["passed"] == 1 and result.details["failures"][0]["test"] == 1


def test_assert_tests_may_use_candidate_name():
    row = {"prompt": HE2_PROMPT, "entry_point": "truncate_number"}
    assert code_reward(HE2_SOLUTION, tests=["assert candidate(2.25) == 0.25"], **row).score == 1.0


def test_test_source_string_gives_one_test_per_assert():
    tests = "import math\nassert math.isclose(add(0.1, 0.2), 0.3)\nassert add(2, 2) == 5\n"
    result = code_reward("def add(a, b):\n    return a + b\n", tests=tests)
    assert (result.score, result.details["total"]) == (0.5, 2)


def test_stdin_stdout_right_and_wrong():
    tests = [{"input": "1 2\n", "output": "3\n"}, {"input": "10 -4\n", "output": "6"}]
    right = "a, b = map(int, input().split())\nprint(a + b, '  ')\n"  # trailing spaces are ignored
    assert code_reward(right, tests=tests).score == 1.0
    assert code_reward("print(0)", tests=tests).score == 0.0
    half = "a, b = map(int, input().split())\nprint(a + b if a < 5 else a - b)\n"
    assert code_reward(half, tests=tests).score == 0.5


def test_stdin_stdout_program_must_exit_cleanly_and_runs_as_main():
    tests = [{"input": "", "output": "hi"}]
    assert code_reward("if __name__ == '__main__':\n    print('hi')\n", tests=tests).score == 1.0
    assert code_reward("print('hi')\nraise SystemExit(3)\n", tests=tests).score == 0.0


def test_apps_style_and_json_encoded_tests():
    apps = '{"inputs": ["2\\n", "5\\n"], "outputs": ["4\\n", "25\\n"]}'
    assert code_reward("n = int(input())\nprint(n * n)", tests=apps).score == 1.0


def test_no_code_and_syntax_errors_score_zero():
    assert code_reward("I cannot solve this.\n```text\nnope\n```", tests=ADD_TESTS).score == 0.0
    assert code_reward("def add(a, b) return a + b", tests=ADD_TESTS).score == 0.0


# --- Pure helpers -------------------------------------------------------------------------------

def test_extract_code_prefers_longest_python_fence_and_accepts_unterminated():
    text = "```python\nx = 1\n```\nthen\n```python\ny = 2\nz = 3\n```\n```bash\nrm -rf /\n```"
    assert extract_code(text) == "y = 2\nz = 3\n"
    assert extract_code("```py\nprint(1)\nprint(2)") == "print(1)\nprint(2)\n"  # generation cut off
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert extract_code("```cpp\nint main() {}\n```") == ""
    assert extract_code("    return 1\n") == "    return 1\n"  # a body keeps its indentation


def test_build_program_body_definition_and_natural_language_prompt():
    assert build_program(HE2_SOLUTION, HE2_PROMPT, "truncate_number") == HE2_PROMPT + HE2_SOLUTION
    full = "def has_close_elements(numbers, threshold):\n    return False\n"
    assert build_program(full, HE0_PROMPT, None) == "from typing import List\n\n\n" + full
    assert build_program("print(1)\n", "Write a program that prints 1.", None) == "print(1)\n"


def test_normalize_output():
    assert normalize_output("1 2  \r\n3\n\n\n") == normalize_output("1 2\n3") == "1 2\n3"
    assert normalize_output(" 1") != normalize_output("1")  # leading whitespace matters


def test_builtin_name_resolves_and_rows_need_tests():
    assert get_reward("code") is code_reward
    assert get_reward("code", timeout_s=1.0)(HE2_SOLUTION, **HE2).score == 1.0


def test_malformed_rows_raise_clear_errors():
    with pytest.raises(ValueError, match="'tests'.*'test'"):
        code_reward("print(1)")
    with pytest.raises(ValueError, match="entry_point"):
        parse_tests(None, HE2_TEST, None)
    with pytest.raises(ValueError, match="no tests"):
        parse_tests([], None, None)
    with pytest.raises(ValueError, match="a test must be"):
        parse_tests([{"stdin": "1"}], None, None)


def test_body_only_completion_keeps_its_indentation_after_thinking_is_removed():
    """HumanEval completions are function bodies: stripping the answer would unindent the first line."""
    from rewards.base import wants_raw_completion
    from rewards.code import answer_text

    fn = get_reward("code")
    assert wants_raw_completion(fn)  # the runner must not strip the completion for this reward
    assert answer_text("<think>\nplan\n</think>\n\n    return a + b\n") == "    return a + b"
    assert answer_text("<think>\nstill thinking") == ""
    row = {"prompt": 'def add(a, b):\n    """Sum."""\n', "entry_point": "add", "tests": ["assert add(1, 2) == 3"]}
    assert fn("<think>\nplan\n</think>\n\n    return a + b\n", **row).score == 1.0
    assert fn("<think>\nplan\n</think>\n\n    return a - b\n", **row).score == 0.0
    assert fn("<think>\nplan, no answer yet", **row).score == 0.0
