"""Language rewards: answer in the asked language (langdetect) and reference-based translation (chrF).

    from rewards.language import language_reward, translation_reward
    language_reward("La capitale de l'Italie est Rome.", language="fr").score          # -> 1.0
    language_reward("The capital of Italy is Rome.", language="fr").score             # -> 0.0
    translation_reward("Le chat dort.", answer="Le chat dort.").score                 # -> 1.0

`language_reward` (built-in "language"): row field `language`, an ISO 639-1 code as langdetect reports
it ("fr", "de", "es", "zh-cn", ...). Score: 1.0 when that language is the most likely one, else
langdetect's probability for it (0.0 when it is not among the candidates), so a mixed answer earns
partial credit. langdetect
samples at random; it is seeded once so the same text always gets the same score. An answer without
letters (empty, digits only) scores 0.0: it is in no language.

`translation_reward` (built-in "translation"): row field `answer`, the reference translation (or a
list of references). Score: sacrebleu's sentence-level chrF (character n-gram F-score, beta=2) / 100,
in [0, 1]; only the first line of the answer part is scored when `first_line=True` (small models
often add commentary after the translation). A hypothesis more than `MAX_LENGTH_RATIO` times as long
as the longest reference (plus 100 characters) is not a translation: it scores 0.0 without chrF, whose
time grows with the text.
"""
from __future__ import annotations

import functools
from typing import Any

from rewards.base import RewardResult, reward_spec

MAX_LENGTH_RATIO = 4


@functools.lru_cache(maxsize=None)
def _detector() -> Any:
    import langdetect

    langdetect.DetectorFactory.seed = 0  # deterministic: the same text always gets the same languages
    return langdetect


def language_probabilities(text: str) -> dict[str, float]:
    """langdetect's candidate languages with probabilities; {} for text without letters."""
    if not any(ch.isalpha() for ch in text):
        return {}
    langdetect = _detector()
    try:
        return {c.lang: c.prob for c in langdetect.detect_langs(text)}
    except langdetect.LangDetectException:  # "No features in text": nothing to detect, like no letters
        return {}


@reward_spec(required=("language",))
def language_reward(completion: str, *, language: str, **row: Any) -> RewardResult:
    """1.0 if the answer is most likely in `language` (langdetect), else the probability that it is."""
    probs = language_probabilities(completion)
    detected = max(probs, key=probs.get) if probs else None
    score = 1.0 if detected == language else probs.get(language, 0.0)
    return RewardResult(score, {"detected": detected, "language": language, "probability": probs.get(language, 0.0)})


@functools.lru_cache(maxsize=1)
def _chrf() -> Any:
    from sacrebleu.metrics import CHRF

    return CHRF()


@reward_spec(required=("answer",))
def translation_reward(completion: str, *, answer: str | list[str], first_line: bool = True,
                       **row: Any) -> RewardResult:
    """chrF of the answer against the reference translation(s), scaled to [0, 1]."""
    references = [answer] if isinstance(answer, str) else list(answer)
    if not references or not all(isinstance(r, str) and r.strip() for r in references):
        raise ValueError(f"translation reward: `answer` must be a non-empty reference string or list, got {answer!r:.120}")
    text = completion.strip()
    hypothesis = text.splitlines()[0].strip() if first_line and text else text
    if len(hypothesis) > MAX_LENGTH_RATIO * max(map(len, references)) + 100:
        return RewardResult(0.0, {"hypothesis": hypothesis[:200], "reason": f"{len(hypothesis)} characters: more than "
                                  f"{MAX_LENGTH_RATIO} times the reference's length"})
    score = _chrf().sentence_score(hypothesis, references).score / 100.0
    return RewardResult(score, {"hypothesis": hypothesis[:200]})
