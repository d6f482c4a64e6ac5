"""Language tasks from small data files written for this project (envs/data/):

- `multilingual`: answer an English question in the asked language (French, Spanish, German, Italian,
  Portuguese); reward "language" (langdetect's probability of that language).
- `translation`: English sentences into French, German or Spanish; reward "translation" (chrF against
  the reference translation).
Options: `languages` (ISO codes to keep, default all).
"""
from __future__ import annotations

from typing import Any

from envs.builtin.common import check_options, count_rows, data_rows, sample_rows
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec


def _rows(task: str, file: str, size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    rows = data_rows(file)
    known = sorted({r["language"] for r in rows})
    opts = check_options(task, options, {"languages": known})
    if not opts["languages"] or set(opts["languages"]) - set(known):
        raise ValueError(f"{task}: languages must be a non-empty subset of {known}, got {opts['languages']}")
    return sample_rows([r for r in rows if r["language"] in opts["languages"]], size, seed, task)


def multilingual_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    return _rows("multilingual", "multilingual.jsonl", size, seed, options)


MULTILINGUAL = TaskSpec(
    name="multilingual",
    description="answer in the asked language (fr/es/de/it/pt); langdetect probability of that language",
    generate=multilingual_rows,
    rewards=[RewardSpec("language", 1.0)],
    source="envs/data/multilingual.jsonl",
    reference=lambda row: row["solution"],
    success_threshold=0.9,
    max_rows=count_rows("multilingual.jsonl"),
)


def translation_rows(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    return _rows("translation", "translation.jsonl", size, seed, options)


TRANSLATION = TaskSpec(
    name="translation",
    description="English to French/German/Spanish sentences; chrF against the reference translation",
    generate=translation_rows,
    rewards=[RewardSpec("translation", 1.0)],
    source="envs/data/translation.jsonl",
    reference=lambda row: row["answer"],
    success_threshold=0.6,
    max_rows=count_rows("translation.jsonl"),
)
