"""`rl score` end to end: the installed console script in a subprocess, as a user runs it.

    .venv/bin/python -m pytest tests/rewards/test_cli_score.py -q
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rewards.registry import BUILTIN_REWARDS
from tests.helpers import TESTS

RL = str(Path(sys.executable).with_name("rl"))  # the console script next to this interpreter (.venv/bin/rl)
USER_REWARDS = TESTS / "data" / "user_rewards.py"


def rl_score(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([RL, "score", *args], capture_output=True, text=True, timeout=120)


def printed(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_math_score_and_details_are_printed():
    # The shell form from the README: '\\boxed{3/4}' reaches the program with two backslashes.
    out = printed(rl_score("--reward", "math", "--completion", "\\\\boxed{3/4}", "--row", '{"answer": "0.75"}'))
    assert out["reward"] == "math" and out["score"] == 1.0
    assert out["details"]["parsed"] == "3/4" and float(out["details"]["gold"]) == 0.75
    # Negative case, and the think block is removed before scoring (the answer after it counts).
    wrong = printed(rl_score("--reward", "math", "--completion", "<think>\\boxed{3/4}</think> so \\boxed{2/3}",
                             "--row", '{"answer": "0.75"}'))
    assert wrong["score"] == 0.0 and wrong["details"]["parsed"] == "2/3"


def test_import_string_reward_with_kwargs():
    out = printed(rl_score("--reward", f"{USER_REWARDS}:char_count", "--completion", "x" * 30))
    assert out["score"] == 0.3
    completion = "<think>\nhm\n</think>\n\nshort answer"
    assert printed(rl_score("--reward", "format", "--completion", completion))["score"] == 1.0
    out = printed(rl_score("--reward", "format", "--completion", completion, "--kwargs", '{"max_answer_chars": 5}'))
    assert out["score"] == 0.0  # the answer is longer than the bound kwarg allows


def test_failed_lookup_lists_builtins_and_accepted_forms():
    proc = rl_score("--reward", "maths", "--completion", "x")
    assert proc.returncode == 2 and proc.stdout == ""
    assert "unknown reward 'maths'" in proc.stderr and "Traceback" not in proc.stderr
    assert all(repr(name) in proc.stderr for name in BUILTIN_REWARDS)
    assert "'package.module:function'" in proc.stderr and "'path/to/file.py:function'" in proc.stderr
    proc = rl_score("--reward", "no/such/file.py:score", "--completion", "x")
    assert proc.returncode == 2 and "does not exist" in proc.stderr


def test_bad_row_json_is_named():
    proc = rl_score("--reward", "math", "--completion", "x", "--row", "{answer: 1}")
    assert proc.returncode != 0 and "--row is not valid JSON" in proc.stderr
    proc = rl_score("--reward", "math", "--completion", "x", "--row", "[1]")
    assert proc.returncode != 0 and "--row must be a JSON object" in proc.stderr


AWAITABLE_REWARD = '''
class Later:
    """An awaitable that is not a coroutine (e.g. what a client library returns for a pending call)."""

    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield from ()
        return self.value


def later(completion, **row):
    return Later(float(completion.strip() == row["answer"]))
'''


def test_every_caller_awaits_any_awaitable_a_reward_returns(tmp_path):
    """`rl score`, the thinking eval's scorer and the reward runner call a reward one way
    (rewards.base.call_reward): an awaitable that is not a coroutine used to crash the first two
    ("a coroutine was expected") while training scored it."""
    from rewards import get_reward
    from rewards.base import call_reward
    from rewards.runner import RewardRunner
    from rewards.spec import RewardSpec, ScoreRequest
    from rl.thinking.evals import success_scorer

    path = tmp_path / "later.py"
    path.write_text(AWAITABLE_REWARD)
    name = f"{path}:later"
    assert printed(rl_score("--reward", name, "--completion", "<think>\nhm\n</think>\n\n42",
                            "--row", '{"answer": "42"}'))["score"] == 1.0
    assert success_scorer(RewardSpec(name), 1.0)("<think>\nhm\n</think>\n\n42", {"answer": "42"})
    assert call_reward(get_reward(name), name, "41", {"answer": "42"}).score == 0.0
    with RewardRunner({"t": [RewardSpec(name)]}, timeout_s=30) as runner:
        [result] = runner.score([ScoreRequest("<think>\nhm\n</think>\n\n42", {"task": "t", "answer": "42"})])
    assert result.reward == 1.0 and not result.errors


SET_DETAILS_REWARD = '''
from rewards.base import RewardResult


def seen(completion, **row):
    return RewardResult(1.0, {"seen": {completion}})  # a set: not JSON
'''


def test_details_that_are_not_json_fail_every_caller(tmp_path):
    """Training scores such a reward None with an error (test_reward_runner); `rl score` used to print
    the details as str() and the thinking eval to count the score, so a broken reward looked fine."""
    from rl.thinking.evals import success_scorer
    from rewards.spec import RewardSpec

    path = tmp_path / "seen.py"
    path.write_text(SET_DETAILS_REWARD)
    name = f"{path}:seen"
    proc = rl_score("--reward", name, "--completion", "42")
    assert proc.returncode != 0 and proc.stdout == ""
    assert f"reward {name!r} returned details that are not JSON" in proc.stderr
    with pytest.raises(TypeError, match="returned details that are not JSON"):
        success_scorer(RewardSpec(name), 1.0)("42", {})
