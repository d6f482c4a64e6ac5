"""A deliberately broken user reward for the off-policy run of tests/e2e/test_e2e.py (loaded by import string).

Calls are numbered through a counter file shared by every process that runs it (the reward runner
replaces processes it kills), and call n misbehaves by n % 5: 0 scores normally, 1 raises, 2 hangs
forever, 3 returns a string, 4 returns NaN. So the counts of each kind in a run are known in advance.
"""
from __future__ import annotations

import fcntl
import time
from pathlib import Path

KINDS = ("ok", "raise", "hang", "string", "nan")


def next_call(counter: str) -> int:
    """Increment the number in `counter` under a lock; returns its value before the increment."""
    with open(counter, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.seek(0)
        n = int(f.read() or 0)
        f.seek(0)
        f.truncate()
        f.write(str(n + 1))
        return n


def flaky(completion: str, *, counter: str, **row) -> object:
    kind = KINDS[next_call(counter) % len(KINDS)]
    Path(counter).with_suffix(".log").open("a").write(kind + "\n")
    if kind == "raise":
        raise RuntimeError("flaky reward: a bug on this sample")
    if kind == "hang":
        while True:
            time.sleep(60)
    if kind == "string":
        return "garbage"
    if kind == "nan":
        return float("nan")
    return len(completion) / 100.0
