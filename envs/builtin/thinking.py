"""Thinking-mode tasks (Qwen3 report, section 4.3): format following and ThinkFollow-style dialogs.

- `format_think`: a short question with a /think or /no_think flag; the response must use the asked
  mode (a thought, or an empty think block) with one well-formed block and an answer (rewards
  "think_mode" and "format", both on the raw response).
- `think_follow`: multi-turn dialogs whose turns switch between /think and /no_think (the last flag
  wins, or none on the last turn: the earlier flag still holds); the final answer must follow the
  dialog's mode and be right (rewards "think_mode" and "math").

Both tasks take each prompt's mode from its flags (`thinking_from_flags`), so `thinking_ratio` does not
apply; option `think_share` (default 0.5) is the fraction of rows that ask for thinking.
"""
from __future__ import annotations

import random
from typing import Any

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec
from rl.thinking.tags import assistant_response, wants_thinking

QUESTIONS = [("Name a primary color.", "Red"), ("What is the opposite of hot?", "Cold"),
             ("How many legs does a spider have?", "8"), ("What is the capital of France?", "Paris"),
             ("Which animal says moo?", "A cow"), ("How many days are in a week?", "7"),
             ("What do bees make?", "Honey"), ("What color is grass?", "Green"),
             ("What is frozen water called?", "Ice"), ("How many sides does a triangle have?", "3")]


def _flag(thinking: bool) -> str:
    return "/think" if thinking else "/no_think"


def _reference(row: Row) -> str:
    """A response in the dialog's mode: a short thought when it asks to think, else an empty block."""
    messages = row["messages"] if "messages" in row else [{"role": "user", "content": row["prompt"]}]
    thought = f"The question asks for something simple; the answer is {row['answer']}."
    return assistant_response(thought if wants_thinking(messages) else None, str(row["answer"]))


def format_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("format_think", options, {"think_share": 0.5})
    rng = random.Random(f"format_think-{seed}")
    rows = []
    for _ in range(size):
        question, answer = rng.choice(QUESTIONS)
        thinking = rng.random() < opts["think_share"]
        rows.append({"prompt": f"{question} {_flag(thinking)}", "answer": answer})
    return rows


FORMAT_THINK = TaskSpec(
    name="format_think",
    description="/think and /no_think compliance with one well-formed think block and an answer",
    generate=format_rows,
    rewards=[RewardSpec("think_mode", 1.0), RewardSpec("format", 0.5)],
    source="procedural",
    reference=_reference,
    thinking_from_flags=True,
)


def follow_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("think_follow", options, {"think_share": 0.5})
    rng = random.Random(f"think_follow-{seed}")
    rows = []
    for _ in range(size):
        turns = rng.randint(2, 3)
        modes = [rng.random() < opts["think_share"] for _ in range(turns)]
        messages: list[dict[str, str]] = []
        for t in range(turns - 1):
            question, answer = rng.choice(QUESTIONS)
            messages.append({"role": "user", "content": f"{question} {_flag(modes[t])}"})
            messages.append({"role": "assistant", "content": answer})
        a, b = rng.randint(1, 9), rng.randint(1, 9)
        # the last turn keeps the earlier flag half of the time when the mode does not change
        flag = "" if modes[-1] == modes[-2] and rng.random() < 0.5 else f" {_flag(modes[-1])}"
        messages.append({"role": "user", "content": f"What is {a} + {b}?{flag}"})
        rows.append({"messages": messages, "answer": str(a + b)})
    return rows


THINK_FOLLOW = TaskSpec(
    name="think_follow",
    description="ThinkFollow: multi-turn dialogs switching /think and /no_think; follow the last flag, answer right",
    generate=follow_rows,
    rewards=[RewardSpec("think_mode", 1.0), RewardSpec("math", 0.5)],
    source="procedural",
    reference=_reference,
    thinking_from_flags=True,
)
