"""Length rewards: target word counts (the Qwen3 report's LengthCtrl task) and DAPO's overlong penalty.

    from rewards.length import length_reward, overlong_reward
    length_reward("one two three four", target_words=4).score                       # -> 1.0
    length_reward("one two", target_words=4, tolerance=0.0).score                   # -> 0.5
    overlong_reward("...", response_tokens=60, max_new_tokens=64, cache_tokens=16).score   # -> -0.75

`length_reward` (built-in "length"): words are whitespace-separated tokens of the answer part (thinking
removed by the runner). Within `tolerance` (a fraction of the target) of `target_words` scores 1.0;
outside it the score falls linearly with the relative error beyond the band and reaches 0.0 at twice
the target (or at an empty answer).

`overlong_reward` (built-in "overlong"): DAPO's soft overlong punishment (Yu et al. 2025, eq. 13) on
the response length in tokens, added to a task's other rewards with a weight. With L_max =
`max_new_tokens` and L_cache = `cache_tokens`: 0 up to L_max - L_cache tokens, then a linear ramp to -1
at L_max. The driver adds `response_tokens` and `max_new_tokens` to every row it scores, so rows in data
files do not carry them; calling it without them is an error.
"""
from __future__ import annotations

from typing import Any

from rewards.base import RewardResult, reward_spec


def count_words(text: str) -> int:
    return len(text.split())


@reward_spec(required=("target_words",))
def length_reward(completion: str, *, target_words: int, tolerance: float = 0.1, **row: Any) -> RewardResult:
    """1.0 within `tolerance * target_words` of the target, then linear down to 0.0 at a 100% error."""
    if not isinstance(target_words, int) or isinstance(target_words, bool) or target_words < 1:
        raise ValueError(f"length reward: target_words must be a positive integer, got {target_words!r}")
    if not 0 <= tolerance < 1:
        raise ValueError(f"length reward: tolerance is a fraction of the target in [0, 1), got {tolerance!r}")
    words = count_words(completion)
    error = abs(words - target_words) / target_words
    score = 1.0 if error <= tolerance else max(0.0, 1.0 - (error - tolerance) / (1.0 - tolerance))
    return RewardResult(score, {"words": words, "target_words": target_words})


@reward_spec()  # response_tokens / max_new_tokens come from the driver, not the data: checked below
def overlong_reward(completion: str, *, response_tokens: int | None = None, max_new_tokens: int | None = None,
                    cache_tokens: int | None = None, **row: Any) -> RewardResult:
    """DAPO soft overlong punishment in [-1, 0]; `cache_tokens` defaults to 20% of max_new_tokens."""
    if response_tokens is None or max_new_tokens is None:
        raise ValueError("reward 'overlong' needs row fields 'response_tokens' and 'max_new_tokens', which the "
                         f"training driver adds to every scored row; this row has {sorted(row)}. Outside "
                         "training, pass them yourself.")
    cache = int(0.2 * max_new_tokens) if cache_tokens is None else cache_tokens
    if not 0 < cache <= max_new_tokens:
        raise ValueError(f"overlong reward: cache_tokens must be in (0, max_new_tokens={max_new_tokens}], got {cache}")
    free = max_new_tokens - cache
    if response_tokens <= free:
        score = 0.0
    elif response_tokens <= max_new_tokens:
        score = (free - response_tokens) / cache
    else:
        score = -1.0
    return RewardResult(score, {"response_tokens": response_tokens, "free_tokens": free, "cache_tokens": cache})
