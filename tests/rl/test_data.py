"""rl.data.TaskMix: the prompts of a step are a pure function of (seed, step), so a resumed run (a fresh
process) continues with exactly the batches an uninterrupted one draws, across epoch boundaries, and
every row of a task is drawn once per epoch."""
from __future__ import annotations

from envs.tasks import Task
from rl.config import TaskConfig
from rl.data import TaskMix

PER_STEP = 3


def tasks() -> list[Task]:
    """Two tasks with 7 and 5 rows: epochs end mid-step, at different steps for each task."""
    def task(name: str, rows: int, weight: float) -> Task:
        return Task(config=TaskConfig(name=name, weight=weight, thinking_ratio=0.5),
                    train=[{"prompt": f"{name}{i}"} for i in range(rows)], eval=[], rewards=[])
    return [task("a", 7, 2.0), task("b", 5, 1.0)]


def draws(mix: TaskMix, steps: range) -> list[list[tuple[str, str, bool]]]:
    return [[(d.task.name, d.row["prompt"], d.thinking) for d in mix.sample(s, PER_STEP)] for s in steps]


def test_resumed_mix_continues_the_uninterrupted_sequence():
    uninterrupted = draws(TaskMix(tasks(), seed=3), range(12))
    for resume_at in (1, 4, 7, 11):  # a fresh TaskMix is what a resumed process builds
        assert draws(TaskMix(tasks(), seed=3), range(resume_at, 12)) == uninterrupted[resume_at:]


def test_every_row_is_drawn_once_per_epoch_and_epochs_reshuffle():
    sequence = [draw for step in draws(TaskMix(tasks(), seed=0), range(20)) for draw in step]
    for name, rows in (("a", 7), ("b", 5)):
        prompts = [prompt for task, prompt, _ in sequence if task == name]
        epochs = [prompts[i:i + rows] for i in range(0, len(prompts) - rows + 1, rows)]
        assert len(epochs) >= 3, "the sequence must cross several epoch boundaries of the task"
        for epoch in epochs:
            assert sorted(epoch) == sorted(f"{name}{i}" for i in range(rows)), f"task {name}: {epoch}"
        assert len({tuple(e) for e in epochs}) > 1, "each epoch is a new shuffle"


def test_order_depends_on_the_seed_and_not_on_the_call_order():
    forward = draws(TaskMix(tasks(), seed=0), range(8))
    mix = TaskMix(tasks(), seed=0)
    assert draws(mix, range(5, 8)) + draws(mix, range(0, 5)) == forward[5:] + forward[:5]
    assert draws(TaskMix(tasks(), seed=1), range(8)) != forward
