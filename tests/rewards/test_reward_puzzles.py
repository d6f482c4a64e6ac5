"""reasoning_gym_reward and reasoning_gym_rows: puzzle rows made offline, scored by reasoning-gym (CPU, ~5 s)."""
from __future__ import annotations

import json

import pytest

from rewards.base import required_fields
from rewards.puzzles import REFUSED, extract_puzzle_answer, reasoning_gym_reward, reasoning_gym_rows
from rewards.registry import get_reward

GENERATORS = ["basic_arithmetic", "chain_sum", "leg_counting", "knights_knaves", "mini_sudoku", "zebra_puzzles",
              "countdown", "cryptarithm", "number_sequence", "shortest_path"]


def score(completion: str, row: dict) -> float:
    return reasoning_gym_reward(completion, **row).score


@pytest.mark.parametrize("name", GENERATORS)
def test_reference_answer_scores_one_and_wrong_answers_less(name: str) -> None:
    rows = reasoning_gym_rows(name, size=4, seed=123)
    assert len(rows) == 4
    for row in rows:
        assert row["rg_dataset"] == name and isinstance(row["answer"], str) and row["question"]
        assert score(f"<think>\nlet me see\n</think>\n\n<answer>{row['answer']}</answer>", row) == 1.0
        assert score(row["answer"], row) == 1.0                      # no tags: the whole answer part
        assert score("<answer>I am not sure</answer>", row) < 1.0
    # Another row's reference answer is wrong for this row (rows differ, so at least one pair must).
    swapped = [score(f"<answer>{rows[(i + 1) % 4]['answer']}</answer>", row) for i, row in enumerate(rows)]
    assert min(swapped) < 1.0


def test_rows_are_deterministic_json_and_respect_config() -> None:
    rows = reasoning_gym_rows("chain_sum", size=3, seed=7, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    assert rows == reasoning_gym_rows("chain_sum", size=3, seed=7, min_terms=2, max_terms=2, min_digits=1, max_digits=1)
    entry = json.loads(rows[0]["rg_entry"])
    assert entry["question"] == rows[0]["question"] and entry["answer"] == rows[0]["answer"]
    assert json.loads(rows[0]["rg_config"])["max_terms"] == 2
    assert entry["metadata"]["num_terms"] == 2
    # rg_entry / rg_config may also be given as dicts (rows not stored through Arrow).
    row = {**rows[0], "rg_entry": entry, "rg_config": json.loads(rows[0]["rg_config"])}
    assert score(f"<answer>{row['answer']}</answer>", row) == 1.0


def test_chain_sum_exact_scores() -> None:
    row = reasoning_gym_rows("chain_sum", size=1, seed=0)[0]
    wrong = str(int(row["answer"]) + 1)
    assert score(f"<answer>{wrong}</answer>", row) == 0.0
    # The last <answer> block counts.
    assert score(f"<answer>{wrong}</answer> no wait <answer>{row['answer']}</answer>", row) == 1.0


def test_empty_answer_scores_zero() -> None:
    row = reasoning_gym_rows("leg_counting", size=1, seed=0)[0]
    result = reasoning_gym_reward("<think>\ncounting legs forever", **row)   # unclosed think: no answer part
    assert result.score == 0.0 and result.details["reason"] == "no answer found"
    assert score("<answer></answer>", row) == 0.0


def test_scorer_crash_on_model_text_is_zero() -> None:
    # prime_factorization's score_answer raises ValueError on non-numeric text: malformed model output.
    row = reasoning_gym_rows("prime_factorization", size=1, seed=0)[0]
    assert score(f"<answer>{row['answer']}</answer>", row) == 1.0
    result = reasoning_gym_reward("<answer>two times three</answer>", **row)
    assert result.score == 0.0 and "scorer rejected the answer" in result.details["reason"]


def test_scorer_crash_with_broken_reference_raises() -> None:
    # The same crash with a reference answer the scorer cannot handle is a row/scorer bug: it must surface.
    row = reasoning_gym_rows("prime_factorization", size=1, seed=0)[0]
    entry = {**json.loads(row["rg_entry"]), "answer": "not a factorisation"}
    with pytest.raises(RuntimeError, match="also raises on the entry's reference answer"):
        reasoning_gym_reward("<answer>two times three</answer>", **{**row, "rg_entry": json.dumps(entry)})


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_generators_raise(name: str) -> None:
    with pytest.raises(ValueError, match="not supported"):
        reasoning_gym_rows(name, size=1, seed=0)
    with pytest.raises(ValueError, match="not supported"):
        reasoning_gym_reward("<answer>True</answer>", rg_dataset=name, rg_entry={"answer": "True"})


def test_bad_rows_raise() -> None:
    with pytest.raises(ValueError, match="not registered"):
        reasoning_gym_reward("<answer>1</answer>", rg_dataset="no_such_puzzle", rg_entry={"answer": "1"})
    with pytest.raises(ValueError, match="'rg_entry' is a string but not JSON"):
        reasoning_gym_reward("<answer>1</answer>", rg_dataset="chain_sum", rg_entry="{oops")


def test_extract_puzzle_answer() -> None:
    assert extract_puzzle_answer("<think>x</think>\nSo <answer> 42 </answer>") == "42"
    assert extract_puzzle_answer("<think><answer>1</answer></think>\n<answer>2</answer>") == "2"
    assert extract_puzzle_answer("<think>x</think>\n\n 3 1 2 4\n2 4 3 1 ") == "3 1 2 4\n2 4 3 1"


def test_registered_as_builtin() -> None:
    fn = get_reward("reasoning_gym")
    assert fn is reasoning_gym_reward
    assert required_fields(fn) == ("rg_dataset", "rg_entry")
