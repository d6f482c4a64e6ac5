"""Retrieval-augmented answering: answer a question from numbered passages and cite the one used
(reward "rag": correct answer, plus citation overlap with the supporting passage).

The passages describe made-up towns and people (names built from syllables), so the answer cannot
come from the model's memory: it must be read from the context. Distractor passages are of the same
kind with different values. Options: `passages` (per prompt, 2-4, default 3).
"""
from __future__ import annotations

import random
from typing import Any

from envs.builtin.common import check_options
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

SYLLABLES = ["vel", "mor", "ka", "tri", "zan", "lo", "ber", "qui", "ash", "dor", "ni", "sel", "run", "ta"]
REGIONS = ["the northern hills", "a river valley", "the eastern coast", "a high plateau", "the southern plains"]
JOBS = ["glassblower", "cartographer", "beekeeper", "clockmaker", "ferry pilot", "botanist", "stonemason"]


def _name(rng: random.Random, parts: int = 2) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(parts)).capitalize()


def _town(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    name, region, pop, year = _name(rng, 3), rng.choice(REGIONS), f"{rng.randint(1000, 90000):,}", rng.randint(1500, 1950)
    text = f"{name} is a town in {region} with a population of {pop}. It was founded in {year}."
    return text, [(f"What is the population of {name}?", pop), (f"In which year was {name} founded?", str(year))]


def _person(rng: random.Random) -> tuple[str, list[tuple[str, str]]]:
    name, job, place, year = f"{_name(rng)} {_name(rng)}", rng.choice(JOBS), _name(rng, 3), rng.randint(1900, 2000)
    text = f"{name} is a {job} who was born in {place} in {year}."
    return text, [(f"What is the profession of {name}?", job), (f"Where was {name} born?", place)]


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    opts = check_options("rag", options, {"passages": 3})
    if not 2 <= opts["passages"] <= 4:
        raise ValueError(f"rag: passages must be 2-4, got {opts['passages']}")
    rng = random.Random(f"rag-{seed}")
    rows = []
    for _ in range(size):
        kind = rng.choice([_town, _person])
        docs = [kind(rng) for _ in range(opts["passages"])]
        target = rng.randrange(len(docs))
        question, answer = rng.choice(docs[target][1])
        context = "\n".join(f"[{i + 1}] {text}" for i, (text, _) in enumerate(docs))
        prompt = (f"Answer using only these passages, and cite the passage you used like [1].\n{context}\n"
                  f"Question: {question}")
        rows.append({"prompt": prompt, "answer": answer, "citations": [target + 1]})
    return rows


RAG = TaskSpec(
    name="rag",
    description="answer from numbered passages about made-up entities and cite the supporting passage",
    generate=generate,
    rewards=[RewardSpec("rag", 1.0)],
    source="procedural (fictional passages)",
    reference=lambda row: f"{row['answer']} [{row['citations'][0]}]",
)
