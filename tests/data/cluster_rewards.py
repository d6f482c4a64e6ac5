"""Rewards for the cluster tests: a fingerprint of the prompt, so a rollouts file shows which rows a
step trained on (the data order of a resumed run is compared with an uninterrupted one)."""
import hashlib


def prompt_fingerprint(completion: str, **row) -> float:
    """A number that identifies the row's prompt (24 bits of its SHA-1); give it weight 0."""
    return float(int(hashlib.sha1(row["prompt"].encode()).hexdigest()[:6], 16))
