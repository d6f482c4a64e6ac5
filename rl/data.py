"""The task mix: which prompts a step trains on, as a pure function of (seed, step).

Each step draws `prompts_per_step` tasks by sampling weight, then takes each task's next row from
an endless stream of per-epoch shuffles of its train split. Because the draw for step s only
depends on the seed and s, a resumed run (or a resubmitted Ray job) sees exactly the batches an
uninterrupted run would have seen, across epoch boundaries too, with no sampler state to save.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from envs.tasks import Row, Task


@dataclass
class Draw:
    task: Task
    row: Row
    thinking: bool
    """Mode for this prompt, drawn with the task's thinking_ratio."""


class TaskMix:
    def __init__(self, tasks: list[Task], seed: int):
        self.tasks, self.seed = tasks, seed
        self.weights = [t.config.weight for t in tasks]
        self._orders: dict[tuple[int, int], list[int]] = {}
        self._drawn_before: tuple[int, int, list[int]] = (0, 0, [0] * len(tasks))  # (step, n, counts)

    def _task_choices(self, step: int, n: int) -> list[int]:
        rng = random.Random(f"{self.seed}-tasks-{step}")
        return rng.choices(range(len(self.tasks)), weights=self.weights, k=n)

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
            out.append(Draw(task, row, thinking=mode_rng.random() < task.config.thinking_ratio))
        return out
