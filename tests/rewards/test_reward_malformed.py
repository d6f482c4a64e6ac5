"""Every registered reward scores hostile model output 0 (a RewardResult, never an exception) in
bounded time: the model controls the completion, and a reward a policy can crash or stall is a reward
it can game (a timeout or an error is left out of the sample's reward instead of counting as wrong).

Each reward gets one valid row and a fixed list of malformed completions; each call goes through
`call_reward` (the path training uses) and must return within `LIMIT_S` (the code reward: `CODE_LIMIT_S`,
as it starts a sandboxed interpreter that parses the program; its own parse of the completion is held
to `LIMIT_S` separately).

Skipped, with the reason:
- `judge`, `reward_model`: they call a model (a Ray actor, a server or a local model folder); their
  parsing of the verdict is tested with tiny models in test_reward_judge.py / test_reward_model.py.
`env` is included: it reads the episode's `env_info` (given here), not the completion.

    .venv/bin/python -m pytest -q tests/rewards/test_reward_malformed.py
"""
from __future__ import annotations

import json
import time
from typing import Any

import pytest

from rewards.base import RewardResult, call_reward
from rewards.puzzles import reasoning_gym_rows
from rewards.registry import BUILTIN_REWARDS, get_reward

LIMIT_S = 1.0
CODE_LIMIT_S = 3.0
MB = 1 << 20
SKIPPED = {"judge": "calls a judge model", "reward_model": "calls a reward model"}

DEEP_JSON = '{"a": ' + "[" * 5000 + "]" * 5000 + "}"
HOSTILE: dict[str, str] = {
    "empty": "",
    "whitespace": " \n\t\r\n  \u3000 ",
    "open_parens": "(" * MB,
    "open_brackets": "[" * MB,
    "open_braces": "{" * MB,
    "deep_json": DEEP_JSON,
    "deep_json_fenced": "```json\n" + DEEP_JSON + "\n```",
    "deep_tool_call": '<tool_call>{"name": "f", "arguments": {"a": ' + "[" * 5000 + "]" * 5000 + "}}</tool_call>",
    "deep_tool_call_string_args": '<tool_call>{"name": "f", "arguments": "' + "[" * 5000 + '"}</tool_call>',
    "deep_python_call": "f(a=" + "[" * 5000 + "]" * 5000 + ")",
    "unclosed_fence": "```python\ndef f(x):\n    return (",
    "unclosed_think": "<think>\nlet me see, the answer is 42",
    "think_tags_only": "<think></think><think></think></think>",
    "unclosed_tool_call": "<tool_call>" * 10_000,
    "unclosed_answer_tag": "<answer>" * 10_000,
    "surrogate": "\ud800 \udfff answer \ud800",
    "nul_bytes": "\x00" * 1000 + "answer\x00",
    "long_line": "x" * 200_000,
    "keyword_then_spaces": "The answer is" + " " * 200_000 + "!",
    "rtl_emoji": "\u202e\u0645\u0631\u062d\u0628\u0627 \u05e9\u05dc\u05d5\u05dd \U0001f600\U0001f9e0 \u202c" * 50,
    "boxed_unclosed": "\\boxed{" * 50_000,
    "boxed_open": "so the result is \\boxed{",
}


def _rg_row() -> dict[str, Any]:
    return reasoning_gym_rows("chain_sum", size=1, seed=0, min_terms=2, max_terms=2)[0]


TRIANGLE = [{"name": "calculate_triangle_area", "parameters": {"type": "dict", "properties": {
    "base": {"type": "integer"}, "height": {"type": "integer"}}, "required": ["base", "height"]}}]
ENV_INFO = {"reward": 0.0, "success": False, "turns": 1, "tool_calls": 0, "tool_errors": 0,
            "stop_reason": "done", "error": None}
# One valid row per reward, chosen so that none of HOSTILE is a right answer.
ROWS: dict[str, Any] = {
    "math": {"answer": "42"},
    "code": {"tests": ["assert f(1) == 2"], "entry_point": "f"},
    "ifeval": {"instruction_id_list": ["startend:end_checker", "detectable_format:json_format"],
               "kwargs": [{"end_phrase": "Is there anything else I can help with?"}, {}],
               "prompt": "Say hi. End with 'Is there anything else I can help with?'"},
    "function_call": {"function": TRIANGLE,
                      "possible_answer": [{"calculate_triangle_area": {"base": [10], "height": [5]}}]},
    "format": {"thinking": True},
    "think_mode": {"thinking": True},
    "reasoning_gym": _rg_row,
    "env": {"env_info": ENV_INFO},
    "length": {"target_words": 100_000, "tolerance": 0.0},
    "overlong": {"response_tokens": 10, "max_new_tokens": 100},
    "json_schema": {"schema": {"type": "object", "properties": {"age": {"type": "integer"}}, "required": ["age"]}},
    "rag": {"answer": "3,421", "citations": [2]},
    "premise": {"premise_false": True},
    "language": {"language": "fr"},
    # chrF credits any shared character n-gram: a reference in a script none of HOSTILE uses
    "translation": {"answer": "猫がソファで寝ている。"},
    "choice": {"answer": "B"},
}
# The length reward only counts words, and falls linearly to 0 at 0 words: a hostile text of w words
# earns w / 100,000 (at most a few hundred words here).
MOST: dict[str, float] = {"length": 0.01}
TESTED = sorted(set(BUILTIN_REWARDS) - set(SKIPPED))
# Known failures outside the files this test's author may change (reported, not fixed here).
def cases() -> list[Any]:
    return [pytest.param(name, case) for name in TESTED for case in sorted(HOSTILE)]


def row_for(name: str) -> dict[str, Any]:
    row = ROWS[name]
    return {"task": "fuzz", **(row() if callable(row) else row)}


def test_every_builtin_reward_has_a_row_or_a_reason_to_skip() -> None:
    assert set(ROWS) == set(TESTED), "add a valid row for the new reward (or a reason to skip it)"


@pytest.mark.parametrize("name, case", cases())
def test_hostile_completion_scores_zero_in_bounded_time(name: str, case: str) -> None:
    fn, row = get_reward(name), row_for(name)
    call_reward(fn, name, "warm-up", row)  # imports and caches are not the completion's doing
    start = time.perf_counter()
    result = call_reward(fn, name, HOSTILE[case], row)
    elapsed = time.perf_counter() - start
    assert isinstance(result, RewardResult) and result.score is not None
    assert 0.0 <= result.score <= MOST.get(name, 0.0), (name, case, result.score, str(result.details)[:300])
    assert elapsed < (CODE_LIMIT_S if name == "code" else LIMIT_S), f"{name} took {elapsed:.2f}s on {case}"
    json.dumps(result.details)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_code_reward_reads_hostile_completions_in_bounded_time(case: str) -> None:
    from rewards.code import answer_text, build_program, extract_code

    start = time.perf_counter()
    program = build_program(extract_code(answer_text(HOSTILE[case])), "def f(x):\n    ", "f")
    assert isinstance(program, str) and time.perf_counter() - start < LIMIT_S


def test_ifeval_counts_a_checker_recursing_on_deep_json_as_not_followed() -> None:
    row = {"instruction_id_list": ["detectable_format:json_format", "punctuation:no_comma"], "kwargs": [{}, {}]}
    for strict in (True, False):
        result = call_reward(get_reward("ifeval", strict=strict), "ifeval", HOSTILE["deep_json"], row)
        assert result.details["followed"] == [False, True] and result.score == 0.5
