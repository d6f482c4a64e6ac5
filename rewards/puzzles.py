"""Puzzle rewards: reasoning-gym's own verifiers, and offline generation of puzzle rows.

    from rewards.puzzles import reasoning_gym_rows, reasoning_gym_reward
    rows = reasoning_gym_rows("chain_sum", size=100, seed=0, min_terms=2, max_terms=3)
    reasoning_gym_reward("<answer>-4</answer>", **rows[0])      # -> RewardResult(score=1.0 or less, ...)

Row fields (what `reasoning_gym_rows` writes and `reasoning_gym_reward` reads):
- `question` (str), `answer` (str, or None for the five generators whose reference lives in metadata:
  boxnet, graph_color, propositional_logic, rubiks_cube, rush_hour): the entry's own fields, for
  prompts and other rewards;
- `rg_dataset` (str): the generator name, e.g. "chain_sum";
- `rg_entry` (JSON str, or a dict): the entry exactly as reasoning-gym produced it (question, answer,
  metadata), passed to the generator's `score_answer`;
- `rg_config` (JSON str or dict, optional, default {}): the generator config the rows were made with
  (without size and seed). Some scorers read their config (decimal_arithmetic, time_intervals,
  polynomial_equations, puzzle_24, ...), so the scorer is built with the same one.
`rg_entry` and `rg_config` are JSON strings because their nested, per-generator shapes do not fit one
Arrow schema (a `datasets` column must have one type across rows).

Answer extraction: the last `<answer>...</answer>` block of the answer part (thinking removed), as
reasoning-gym's own prompts ask; without tags, the whole answer part. An empty answer scores 0.

Score: the generator's `score_answer`, which may give partial credit (e.g. the right answer inside a
longer text). When it raises on the model's text (prime_factorization on non-numbers, coin_flip on
"1e999", ...), the reference answer is scored too: if that scores 1.0 the scorer works and the model's
text was malformed, so the score is 0; otherwise the error propagates (a bug in the scorer or the row).

Generators refused with an error (see `REFUSED`): game_of_life_halting (any non-empty answer scores 1.0),
arc_agi and rearc (their scorers need tuples that a dataset row turns into lists), composite.
"""
from __future__ import annotations

import functools
import json
from typing import Any, Callable

import reasoning_gym

from rewards.base import RewardResult, json_object, reward_spec
from rl.thinking.tags import split_thinking

REFUSED: dict[str, str] = {
    "game_of_life_halting": "its score_answer compares bool(answer), so any non-empty answer scores 1.0",
    "arc_agi": "its score_answer compares tuples in the entry's metadata; a JSON/Arrow row turns them into "
               "lists and even the reference answer then scores 0.05",
    "rearc": "same as arc_agi: the reference answer scores 0.05 once the entry went through JSON",
    "composite": "it mixes other generators: make rows per generator and mix the tasks in the config",
}

Scorer = Callable[[str | None, dict[str, Any]], float]


def _check_name(name: str) -> None:
    if name in REFUSED:
        raise ValueError(f"reasoning-gym generator {name!r} is not supported: {REFUSED[name]}")


@functools.lru_cache(maxsize=256)
def _scorer(name: str, config_json: str) -> Scorer:
    """The generator's score_answer, built once per (generator, config) in this process."""
    _check_name(name)
    return reasoning_gym.create_dataset(name, **json.loads(config_json)).score_answer


def reasoning_gym_rows(name: str, size: int, seed: int, **config: Any) -> list[dict[str, Any]]:
    """`size` rows of generator `name` (offline, deterministic in `seed`); fields: see the module docstring."""
    _check_name(name)
    dataset = reasoning_gym.create_dataset(name, size=size, seed=seed, **config)
    config_json = json.dumps(config, sort_keys=True)
    return [{"question": entry["question"], "answer": entry["answer"], "rg_dataset": name,
             "rg_entry": json.dumps(entry), "rg_config": config_json} for entry in dataset]


def extract_puzzle_answer(completion: str) -> str:
    """The last <answer>...</answer> of the answer part, else the whole answer part (stripped)."""
    _, answer_part = split_thinking(completion)
    tagged = last_tagged(answer_part, "answer")
    return answer_part.strip() if tagged is None else tagged


def last_tagged(text: str, tag: str) -> str | None:
    """What reasoning_gym.utils.extract_answer returns (the last of the non-overlapping <tag>...</tag>
    blocks, left to right, stripped; None without one), in linear time: its lazy regex is quadratic
    on a completion of thousands of unclosed <tag>s."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    found, pos = None, 0
    while (start := text.find(opening, pos)) >= 0:
        end = text.find(closing, start + len(opening))
        if end < 0:
            break
        found, pos = text[start + len(opening):end], end + len(closing)
    return None if found is None else found.strip()


@reward_spec(required=("rg_dataset", "rg_entry"))
def reasoning_gym_reward(completion: str, *, rg_dataset: str, rg_entry: Any, rg_config: Any = None,
                         **row: Any) -> RewardResult:
    """The generator's own score (0..1) for the completion's answer; details: {"answer": extracted text}."""
    entry = _rg_dict(rg_entry, "rg_entry")
    config = {} if rg_config is None else _rg_dict(rg_config, "rg_config")
    score_answer = _scorer(rg_dataset, json.dumps(config, sort_keys=True))
    answer = extract_puzzle_answer(completion)
    if not answer:
        return RewardResult(0.0, {"answer": answer, "reason": "no answer found"})  # malformed model output
    try:
        score = score_answer(answer, entry)
    except Exception as exc:
        _raise_unless_scorer_works(score_answer, entry, rg_dataset, exc)
        # The scorer handles the reference answer, so it was the model's text that broke it: malformed output.
        return RewardResult(0.0, {"answer": answer, "reason": f"scorer rejected the answer: {exc!r:.200}"})
    return RewardResult(float(score), {"answer": answer})


def _raise_unless_scorer_works(score_answer: Scorer, entry: dict[str, Any], name: str, exc: Exception) -> None:
    reference = entry.get("answer")
    if reference is None:
        raise RuntimeError(f"reasoning-gym scorer {name!r} raised, and the entry has no reference answer to tell a "
                           "malformed model answer from a scorer bug") from exc
    try:
        reference_score = score_answer(reference, entry)
    except Exception as ref_exc:
        raise RuntimeError(f"reasoning-gym scorer {name!r} also raises on the entry's reference answer "
                           f"({ref_exc!r:.200}): the row or the scorer is broken") from exc
    if reference_score != 1.0:
        raise RuntimeError(f"reasoning-gym scorer {name!r} raised on the answer and scores the reference answer "
                           f"{reference_score}, not 1.0: the row or the scorer is broken") from exc


def _rg_dict(value: Any, field: str) -> dict[str, Any]:
    return json_object(value, f"reasoning_gym reward: row field {field!r}")
