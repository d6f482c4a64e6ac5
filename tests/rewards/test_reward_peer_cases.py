"""Built-in rewards against the peers' own test cases (tests/data/peer_cases/, README there).

    .venv/bin/python -m pytest tests/rewards/test_reward_peer_cases.py -q

Every case carries the verdict of the peer's reference (Math-Verify's expected value, IFEval's
reference checker, HumanEval's check program, BFCL's ast_checker); our reward must agree on all of them.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rewards import get_reward
from rewards.runner import RewardRunner
from rewards.spec import RewardSpec, ScoreRequest
from tests.helpers import TESTS

CASES = TESTS / "data" / "peer_cases"


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (CASES / name).read_text().splitlines()]


def disagreements(cases: list[dict], score) -> list[str]:
    return [f"{case['source']}: expected {case['expected']}, got {got}" for case in cases
            if (got := score(case)) != case["expected"]]


def test_math_agrees_with_math_verify_tests():
    math = get_reward("math")
    cases = load("math_verify.jsonl")
    assert len(cases) >= 100 and {c["expected"] for c in cases} == {0.0, 1.0}
    assert disagreements(cases, lambda c: math(c["pred"], answer=c["gold"]).score) == []


def test_ifeval_agrees_with_ifevals_instruction_tests():
    ifeval = get_reward("ifeval")
    cases = load("ifeval.jsonl")
    assert len({c["id"] for c in cases}) >= 24 and {c["expected"] for c in cases} == {False, True}
    score = lambda c: ifeval(c["response"], instruction_id_list=[c["id"]], kwargs=[c["kwargs"]], prompt="").score == 1.0
    assert disagreements(cases, score) == []


def test_code_agrees_with_humaneval_check_programs():
    code = get_reward("code")
    cases = load("humaneval.jsonl")
    assert {c["kind"] for c in cases if c["expected"]} >= {"canonical", "example sample"}
    score = lambda c: code(c["completion"], prompt=c["prompt"], test=c["test"], entry_point=c["entry_point"]).score == 1.0
    assert disagreements(cases, score) == []


def test_humaneval_bodies_after_a_think_block_through_the_runner():
    """The training path: the runner strips thinking; a HumanEval body must keep its indentation."""
    cases = [c for c in load("humaneval.jsonl") if c["kind"] in ("canonical", "return None")][:8]
    requests = [ScoreRequest("<think>\nLet me write it.\n</think>\n\n" + c["completion"],
                             {"task": "he", **{k: c[k] for k in ("prompt", "test", "entry_point")}}) for c in cases]
    with RewardRunner({"he": [RewardSpec("code")]}, timeout_s=30.0) as runner:
        results = runner.score(requests)
    assert [r.errors for r in results] == [{}] * len(cases)
    assert [r.reward == 1.0 for r in results] == [c["expected"] for c in cases]


def test_function_call_agrees_with_bfcls_ast_checker():
    function_call = get_reward("function_call")
    cases = [{"source": f"{row['source']} ({v['kind']})", "expected": v["expected"], "calls": v["calls"],
              "function": row["function"], "possible_answer": row["possible_answer"]}
             for row in load("bfcl.jsonl") for v in row["variants"]]
    assert len(cases) >= 200 and {c["expected"] for c in cases} == {False, True}

    def score(case: dict) -> bool:
        text = "\n".join(f"<tool_call>{json.dumps({'name': name, 'arguments': args})}</tool_call>"
                         for call in case["calls"] for name, args in call.items())
        return function_call(text, function=case["function"], possible_answer=case["possible_answer"]).score == 1.0

    assert disagreements(cases, score) == []


@pytest.mark.parametrize("name", ["math", "code", "ifeval", "function_call"])
def test_each_file_has_cases_of_both_verdicts(name):
    file = {"math": "math_verify.jsonl", "code": "humaneval.jsonl", "ifeval": "ifeval.jsonl",
            "function_call": "bfcl.jsonl"}[name]
    rows = load(file)
    verdicts = {v["expected"] for r in rows for v in r.get("variants", [r])}
    assert len(verdicts) == 2, f"{file} must hold passing and failing cases"
