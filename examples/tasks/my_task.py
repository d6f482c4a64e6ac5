"""A task category of your own, by import string: a generator, a reward, and a `TaskSpec` tying them.

    # in a config's data.tasks (paths are relative to where `rl train` runs):
    - name: reverse_words
      source: examples/tasks/my_task.py:REVERSE_WORDS
      options: {min_letters: 3, max_letters: 6}

    rl tasks show ... lists built-ins only; try this one with:
    python -c "from envs.tasks import load_task; from rl.config import TaskConfig; \
               print(load_task(TaskConfig(name='reverse_words', source='examples/tasks/my_task.py:REVERSE_WORDS'), 0).train[0])"

The generator must be deterministic in (size, seed, options); each row needs `prompt` (or `messages`)
and the fields its rewards read. The reward follows the contract in rewards/base.py: a plain function
`(completion, **row) -> float | None | RewardResult`, here named by its file path so that reward worker
processes can import it.
"""
from __future__ import annotations

import random
import string
from pathlib import Path
from typing import Any

from envs.tasks import TaskSpec
from rewards.base import RewardResult, reward_spec
from rewards.spec import RewardSpec


def generate(size: int, seed: int, options: dict[str, Any]) -> list[dict[str, Any]]:
    low, high = int(options.get("min_letters", 3)), int(options.get("max_letters", 6))
    rng = random.Random(f"reverse_words-{seed}")
    rows = []
    for _ in range(size):
        word = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(low, high)))
        rows.append({"prompt": f"Write the word '{word}' backwards. Reply with the reversed word only.",
                     "word": word})
    return rows


@reward_spec(required=("word",))  # a row without `word` is rejected when the task loads
def reversed_word(completion: str, *, word: str, **row: Any) -> RewardResult:
    """1.0 for exactly the reversed word (quotes, spaces and a final period ignored), else 0.0."""
    answer = completion.strip().strip("'\".").strip().lower()
    return RewardResult(float(answer == word[::-1]), {"answer": answer[:40], "expected": word[::-1]})


REVERSE_WORDS = TaskSpec(
    name="reverse_words",
    description="write a random word backwards; exact match",
    generate=generate,
    # an absolute file path: reward processes may run in another folder
    rewards=[RewardSpec(f"{Path(__file__).resolve()}:reversed_word", 1.0)],
    source="procedural (examples/tasks/my_task.py)",
    reference=lambda row: row["word"][::-1],
)
