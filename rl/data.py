"""The task mix: which prompts a step trains on, as a pure function of (seed, step).

Each step draws `prompts_per_step` tasks by sampling weight, then takes each task's next row from
an endless stream of per-epoch shuffles of its train split. Because the draw for step s only
depends on the seed and s, a resumed run (or a resubmitted Ray job) sees exactly the batches an
uninterrupted run would have seen, across epoch boundaries too, with no sampler state to save.

Curriculum: a task's `weight_schedule` makes its weight a function of the step (`TaskConfig.weight_at`),
which keeps the draw a pure function of (seed, step). Extra draws for dynamic sampling
(`sample_extra`) take rows uniformly from the train split with their own seeded stream, so they
never shift the positions of the main stream.
"""
from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any

from envs.tasks import Row, Task
from rl.thinking.chat import render_chat
from rl.thinking.tags import response_prefix, with_flag
from rl.types import RolloutRequest


@dataclass
class Draw:
    task: Task
    row: Row
    thinking: bool
    """Mode for this prompt, drawn with the task's thinking_ratio."""


class TaskMix:
    def __init__(self, tasks: list[Task], seed: int):
        self.tasks, self.seed = tasks, seed
        self._orders: dict[tuple[int, int], list[int]] = {}
        self._drawn_before: tuple[int, int, list[int]] = (0, 0, [0] * len(tasks))  # (step, n, counts)

    def weights(self, step: int) -> list[float]:
        """Each task's sampling weight at `step` (constant, or its curriculum schedule)."""
        return [t.config.weight_at(step) for t in self.tasks]

    def _task_choices(self, step: int, n: int, stream: str = "tasks") -> list[int]:
        rng = random.Random(f"{self.seed}-{stream}-{step}")
        return rng.choices(range(len(self.tasks)), weights=self.weights(step), k=n)

    def _mode(self, task: Task, row: Row, rng: random.Random) -> bool:
        draw = rng.random() < task.config.thinking_ratio  # drawn even when unused: later draws stay put
        fixed = task.row_mode(row)
        return draw if fixed is None else fixed

    def _row_index(self, task_idx: int, k: int) -> int:
        """Row of the k-th draw from a task: epoch k // n of a fixed per-epoch shuffle."""
        n = len(self.tasks[task_idx].train)
        epoch, pos = divmod(k, n)
        order = self._orders.get((task_idx, epoch))
        if order is None:
            order = list(range(n))
            random.Random(f"{self.seed}-rows-{task_idx}-{epoch}").shuffle(order)
            self._orders = {key: v for key, v in self._orders.items() if key[1] >= epoch - 1}
            self._orders[(task_idx, epoch)] = order
        return order[pos]

    def sample(self, step: int, n: int) -> list[Draw]:
        """The `n` prompts of `step`. Counts earlier draws per task by replaying the task choices
        (cheap: n small integers per step) so row positions continue where the last step left off."""
        done, done_n, counts = self._drawn_before
        if done > step or done_n != n:
            done, counts = 0, [0] * len(self.tasks)
        drawn = list(counts)
        for earlier in range(done, step):
            for t in self._task_choices(earlier, n):
                drawn[t] += 1
        self._drawn_before = (step, n, list(drawn))
        mode_rng = random.Random(f"{self.seed}-modes-{step}")
        out = []
        for t in self._task_choices(step, n):
            task = self.tasks[t]
            row = task.train[self._row_index(t, drawn[t])]
            drawn[t] += 1
            out.append(Draw(task, row, thinking=self._mode(task, row, mode_rng)))
        return out

    def sample_extra(self, step: int, round_index: int, n: int) -> list[Draw]:
        """`n` more prompts for `step` (dynamic sampling's extra round `round_index` >= 1): tasks by the
        step's weights, rows uniformly at random from the train split, a stream of their own."""
        stream = f"extra{round_index}"
        rng = random.Random(f"{self.seed}-{stream}-rows-{step}")
        mode_rng = random.Random(f"{self.seed}-{stream}-modes-{step}")
        out = []
        for t in self._task_choices(step, n, stream):
            task = self.tasks[t]
            row = task.train[rng.randrange(len(task.train))]
            out.append(Draw(task, row, thinking=self._mode(task, row, mode_rng)))
        return out


def group_requests(task: Task, row: Row, thinking: bool, *, uid: str, size: int, max_new_tokens: int, seed: int,
                   budget: int | None, tokenizer: Any, switch: str = "soft"
                   ) -> tuple[list[RolloutRequest], list[Row], list[str]]:
    """`size` requests for one prompt (a GRPO group, or an eval prompt's k samples), the row each sample is
    scored with (plus the mode it was asked in), and the response prefix its prompt already holds.
    `switch` is thinking.switch: soft renders the flagged dialog without a pre-filled think block."""
    text = render_prompt(task, row, thinking, tokenizer, switch)
    ids = tokenizer.encode(text, add_special_tokens=False)
    request = RolloutRequest(uid=uid, task=task.name, prompt_ids=ids, max_new_tokens=max_new_tokens,
                             thinking=thinking, thinking_budget=budget, seed=seed, env=task.env,
                             row=row if task.env else None, soft_switch=switch == "soft")
    # distinct objects per sample: later steps add per-sample fields (env_info, lengths) to each row
    requests = [dataclasses.replace(request) for _ in range(size)]
    return requests, [{**row, "thinking": thinking} for _ in range(size)], [response_prefix(text)] * size


def render_prompt(task: Task, row: Row, thinking: bool, tokenizer: Any, switch: str) -> str:
    """A row's prompt text in the asked mode. hard: the template's mode switch (Qwen3 pre-fills the empty
    think block when not thinking). soft: the mode's flag on the dialog (`with_flag`: none is added when
    the dialog already asks for it) and the template's default rendering, so the policy writes the block."""
    messages, tools = task.chat(row, thinking)
    if switch == "soft":
        return render_chat(tokenizer, with_flag(messages, thinking), thinking=True, tools=tools)
    return render_chat(tokenizer, messages, thinking=thinking, tools=tools)


def informative(rewards: list[float], eps: float = 1e-8) -> bool:
    """Whether a group's rewards differ: a group whose samples all scored the same has zero advantages
    and teaches nothing (what DAPO's dynamic sampling filters out)."""
    return max(rewards) - min(rewards) > eps
