"""Rewards used by end-to-end tests (loaded by import string, as a user's reward would be)."""


def char_count(completion: str, **row) -> float:
    """Varies with every random sample, so GRPO groups always have reward variance."""
    return len(completion) / 100.0


def even_length(completion: str, **row) -> float:
    """Passes about half of random samples: per-query pass rates spread over the whole band."""
    return float(len(completion) % 2 == 0)
