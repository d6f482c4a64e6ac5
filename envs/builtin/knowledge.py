"""Knowledge tasks from small data files written for this project (envs/data/):

- `counterfactual` (CounterFactQA style): questions with a false premise, where the right answer says
  so, mixed with true-premise questions that must be answered (reward "premise").
- `open_qa`: open-ended "why/how/what" questions judged against a reference answer by the judge model
  (reward "judge": the "rl-judge" actor that `rl train` serves from the `judge.model` config, or set
  the reward's `judge` kwarg to a model folder or an OpenAI-compatible URL).
"""
from __future__ import annotations

from typing import Any

from envs.builtin.common import check_options, count_rows, data_rows, sample_rows
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec


def counterfactual_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    check_options("counterfactual", options, {})
    return sample_rows(data_rows("counterfactual.jsonl"), size, seed, "counterfactual")


COUNTERFACTUAL = TaskSpec(
    name="counterfactual",
    description="false-premise questions (say the premise is false) mixed with true ones (answer them)",
    generate=counterfactual_rows,
    rewards=[RewardSpec("premise", 1.0)],
    source="envs/data/counterfactual.jsonl",
    reference=lambda row: row["solution"],
    max_rows=count_rows("counterfactual.jsonl"),
)


def open_qa_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    check_options("open_qa", options, {})
    return sample_rows(data_rows("open_qa.jsonl"), size, seed, "open_qa")


OPEN_QA = TaskSpec(
    name="open_qa",
    description="open-ended science/everyday questions; the judge model compares the answer to a reference",
    generate=open_qa_rows,
    rewards=[RewardSpec("judge", 1.0)],
    source="envs/data/open_qa.jsonl",
    reference=lambda row: row["answer"],
    success_threshold=0.5,  # the judge's P(YES)
    max_rows=count_rows("open_qa.jsonl"),
)
