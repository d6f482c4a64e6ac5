"""Retrieval-augmented answering: the answer must be right AND cite the passage that supports it.

    from rewards.rag import rag_reward
    rag_reward("Velmora has 3,421 inhabitants [2].", answer="3,421", citations=[2]).score     # -> 1.0
    rag_reward("Velmora has 3,421 inhabitants.", answer="3,421", citations=[2]).score        # -> 0.7
    rag_reward("It has 5,000 inhabitants [1].", answer="3,421", citations=[2]).score         # -> 0.0

Row fields: `answer` (the gold answer text, or a list of acceptable answers), `citations` (1-based
numbers of the passages that support it, as the prompt numbers them "[1] ...").

Correctness: the SQuAD normalisation of a gold answer (lower case, no punctuation, articles or extra
spaces) occurs in the normalised answer part. Citations are the bracketed numbers "[k]" in the
answer part; the citation score is the Jaccard overlap of the cited and the supporting passages (1.0
for citing exactly the supporting ones, less for missing ones or extra unsupported ones). Score:
`answer_weight * correct + (1 - answer_weight) * citation`, and citing is only credited when the answer
is correct (grounding a wrong answer earns nothing).
"""
from __future__ import annotations

import re
import string
from typing import Any

from rewards.base import RewardResult, reward_spec

_CITATION = re.compile(r"\[(\d{1,2})\]")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NO_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation (the evaluation script's normalize_answer)."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_NO_PUNCTUATION)).split())


def cited_passages(text: str) -> set[int]:
    return {int(n) for n in _CITATION.findall(text)}


def contains_answer(text: str, answers: list[str]) -> bool:
    normalized = f" {normalize_answer(text)} "
    return any(f" {normalize_answer(a)} " in normalized for a in answers if normalize_answer(a))


@reward_spec(required=("answer", "citations"))
def rag_reward(completion: str, *, answer: str | list[str], citations: list[int], answer_weight: float = 0.7,
               **row: Any) -> RewardResult:
    """Correct answer (weight `answer_weight`) plus citation overlap with the supporting passages."""
    answers = [answer] if isinstance(answer, str) else list(answer)
    gold = {int(c) for c in citations}
    if not answers or not gold:
        raise ValueError(f"rag reward: a row needs a non-empty `answer` and `citations`, got {answer!r}, {citations!r}")
    correct = contains_answer(completion, answers)
    cited = cited_passages(completion)
    overlap = len(cited & gold) / len(cited | gold)
    score = answer_weight * correct + (1.0 - answer_weight) * overlap * correct
    return RewardResult(score, {"correct": correct, "cited": sorted(cited), "supporting": sorted(gold)})
