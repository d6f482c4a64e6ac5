"""Puzzle tasks from reasoning-gym (offline generators, each scored by the generator's own verifier).

ZebraLogic-style logic grids (`zebra_logic`), AutoLogi-style constraint puzzles (`knights_knaves`,
`sudoku`), and other reasoning-gym families: graphs (`graph_relations`: family trees), cryptarithms,
countdown, number sequences. Every task's `options` are reasoning-gym config fields of its generator
(e.g. `{num_people: 3}` for zebra_logic), on top of defaults chosen to keep prompts short (the
embedded default allows 256 prompt tokens).
"""
from __future__ import annotations

from typing import Any

from envs.builtin.common import ANSWER_TAGS, tagged
from envs.tasks import Generator, Row, TaskSpec
from rewards.puzzles import reasoning_gym_rows
from rewards.spec import RewardSpec


def _rg_generator(generator: str, defaults: dict[str, Any]) -> Generator:
    def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
        rows = reasoning_gym_rows(generator, size=size, seed=seed, **{**defaults, **options})
        return [{**row, "prompt": f"{row['question']}\n{ANSWER_TAGS}"} for row in rows]
    return generate


def _rg_task(name: str, generator: str, description: str, defaults: dict[str, Any] | None = None) -> TaskSpec:
    return TaskSpec(name=name, description=description, generate=_rg_generator(generator, defaults or {}),
                    rewards=[RewardSpec("reasoning_gym", 1.0)], source=f"reasoning-gym:{generator}",
                    reference=lambda row: tagged(row["answer"]))


ZEBRA_LOGIC = _rg_task("zebra_logic", "zebra_puzzles", "ZebraLogic-style logic grid: who lives where",
                       {"num_people": 2, "num_characteristics": 2})
KNIGHTS_KNAVES = _rg_task("knights_knaves", "knights_knaves", "AutoLogi-style: knights always tell the truth, "
                          "knaves always lie; who is which", {"n_people": 2})
SUDOKU = _rg_task("sudoku", "mini_sudoku", "4x4 sudoku constraint puzzle")
GRAPH_RELATIONS = _rg_task("graph_relations", "family_relationships", "graph reasoning over a family tree: "
                           "the relation between two people")
CRYPTARITHM = _rg_task("cryptarithm", "cryptarithm", "letter-to-digit sums (SEND + MORE = MONEY)")
COUNTDOWN = _rg_task("countdown", "countdown", "reach a target number with + - * / over given numbers",
                     {"min_numbers": 3, "max_numbers": 4})
SEQUENCES = _rg_task("sequences", "number_sequence", "continue an integer sequence")
