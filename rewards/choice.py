"""Multiple-choice reward: the letter the answer picks must be the row's `answer` letter.

    from rewards.choice import choice_reward
    choice_reward("The answer is (B).", answer="B").score      # -> 1.0
    choice_reward("Answer: C", answer="B").score               # -> 0.0
    choice_reward("A or B, hard to say", answer="B").score     # -> 0.0 (no single pick)

Extraction, from the answer part (first rule that finds something wins):
1. an explicit statement: "answer is (B)", "Answer: B", "\\boxed{B}", "option B" (the last one counts);
2. the whole answer is one letter, optionally bracketed or followed by "." / ")" and the option text.
Anything else is no pick (score 0.0, malformed model output). Letters are A-J, upper case in the
answer, as MMLU/GPQA-style prompts print them. Hand-written because lm-eval's multiple-choice
filters work on log-likelihoods or on its own regex configs, not as a function over one response.
"""
from __future__ import annotations

import re
from typing import Any

from rewards.base import RewardResult, reward_spec

# The words are case-insensitive, the letter is not: "the answer is a bird" picks nothing.
# One `\s*` per gap: two adjacent ones (`\s*[:\-]?\s*`) backtrack quadratically over a long run of spaces.
_EXPLICIT = re.compile(r"(?i:answer(?: is)?|option|choice)\s*(?:[:\-]\s*)?\(?\**([A-J])\b\)?|\\boxed\{\(?([A-J])\)?\}")
# "B", "(B)", "B.", "B)", "B:", optionally followed by the option's text.
_LONE = re.compile(r"^\s*(?:\(([A-J])\)|([A-J])[.):])(?:\s|$)|^\s*([A-J])\s*$")


def picked_letter(text: str) -> str | None:
    explicit = [a or b for a, b in _EXPLICIT.findall(text)]
    if explicit:
        return explicit[-1].upper()
    lone = _LONE.match(text)
    return next(g for g in lone.groups() if g) if lone else None


@reward_spec(required=("answer",))
def choice_reward(completion: str, *, answer: str, **row: Any) -> RewardResult:
    """1.0 when the picked letter equals `answer` (a letter A-J), else 0.0."""
    gold = str(answer).strip().upper()
    if len(gold) != 1 or gold not in "ABCDEFGHIJ":
        raise ValueError(f"choice reward: `answer` must be one letter A-J, got {answer!r}")
    picked = picked_letter(completion)
    return RewardResult(float(picked == gold), {"picked": picked, "gold": gold})
