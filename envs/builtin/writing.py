"""Open-ended writing scored by a reward model without a reference (preference alignment, Qwen3
report section 4.4 (3)): reward "reward_model" with a sigmoid-normalised score in (0, 1).

The reward model is the "rl-reward-model" actor that `rl train` serves from the `reward_model.model`
config (no trained reward model ships offline: set it to your RM's folder), or set the reward's `model`
kwarg to a folder to load one in the reward process instead. Each row carries a
short example response (`solution`) for `rl tasks show`; with no reference, it is not an upper bound.
Options: `forms` (subset of `FORMS`).
"""
from __future__ import annotations

import random
from typing import Any

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

TOPICS = ["a rainy afternoon", "a lost key", "the first day of spring", "an old lighthouse", "a busy market",
          "a quiet library", "a friendly dog", "the night sky", "a long train ride", "a cup of tea"]
FORMS: dict[str, str] = {
    "haiku": "Write a haiku about {topic}.",
    "story": "Write a two-sentence story about {topic}.",
    "thanks": "Write a short thank-you note to a neighbour who helped with {topic}.",
    "slogan": "Write a catchy one-line slogan about {topic}.",
    "description": "Describe {topic} in three vivid sentences.",
}
EXAMPLE = "Here is my answer about {topic}: it is calm, warm and full of small details worth noticing."


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("open_writing", options, {"forms": list(FORMS)})
    if not opts["forms"] or set(opts["forms"]) - set(FORMS):
        raise ValueError(f"open_writing: forms must be a non-empty subset of {sorted(FORMS)}, got {opts['forms']}")
    rng = random.Random(f"open_writing-{seed}")
    rows = []
    for _ in range(size):
        form, topic = rng.choice(opts["forms"]), rng.choice(TOPICS)
        rows.append({"prompt": FORMS[form].format(topic=topic), "form": form,
                     "solution": EXAMPLE.format(topic=topic)})
    return rows


OPEN_WRITING = TaskSpec(
    name="open_writing",
    description="open-ended creative writing (haiku, stories, notes); scalar reward model, no reference",
    generate=generate,
    rewards=[RewardSpec("reward_model", 1.0, kwargs={"normalize": "sigmoid"})],
    source="procedural",
    reference=lambda row: row["solution"],
    success_threshold=0.5,
)
