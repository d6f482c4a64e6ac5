"""The `format` and `think_mode` rewards (rewards/format.py)."""
from __future__ import annotations

import pytest

from rewards.base import wants_raw_completion
from rewards.format import format_reward, think_mode_reward
from rewards.registry import get_reward
from rl.thinking.tags import EMPTY_THINK, STOP_THINKING

THOUGHT = "<think>\n2 plus 2 is 4\n</think>\n\nThe answer is 4."
NO_THOUGHT = EMPTY_THINK + "The answer is 4."
FORCED = "<think>\n2 plus 2" + STOP_THINKING + "4"


def test_both_are_builtins_that_read_the_raw_completion():
    assert get_reward("format") is format_reward and get_reward("think_mode") is think_mode_reward
    assert wants_raw_completion(format_reward) and wants_raw_completion(think_mode_reward)


@pytest.mark.parametrize("completion", [THOUGHT, NO_THOUGHT, FORCED, "<think></think>4"])
def test_format_accepts_one_block_then_an_answer(completion):
    result = format_reward(completion, task="math", answer="4")  # other row fields are ignored
    assert result.score == 1.0 and "reason" not in result.details


@pytest.mark.parametrize("completion, status", [
    ("The answer is 4.", "no_think_block"),
    ("<think>\n2 plus 2 is", "unclosed"),
    ("Sure. <think>x</think>4", "text_before"),
    ("<think>a<think>b</think>c</think>4", "nested"),
    ("<think>a</think>b<think>c</think>4", "repeated"),
    ("2 plus 2\n</think>\n\n4", "stray_close"),
])
def test_format_rejects_malformed_blocks(completion, status):
    result = format_reward(completion)
    assert result.score == 0.0
    assert result.details["status"] == status and status in result.details["reason"]


def test_format_answer_and_thought_lengths():
    assert format_reward("<think>x</think>\n\n  ").score == 0.0  # empty answer
    assert format_reward(THOUGHT, min_answer_chars=100).details["reason"] == "answer shorter than 100 chars"
    assert format_reward(THOUGHT, max_answer_chars=5).score == 0.0
    assert format_reward(THOUGHT, max_answer_chars=16).score == 1.0  # "The answer is 4." is 16 chars
    assert format_reward(THOUGHT, max_thinking_chars=5).details["reason"] == "thought longer than 5 chars"
    assert format_reward(THOUGHT, max_thinking_chars=13).score == 1.0  # "2 plus 2 is 4"
    assert format_reward(THOUGHT, max_thinking_chars=12).score == 0.0
    details = format_reward(THOUGHT).details
    assert details["answer_chars"] == 16 and details["thinking_chars"] == 13 and details["status"] == "ok"


def test_format_checks_the_asked_mode_when_the_row_has_it():
    assert format_reward(THOUGHT, thinking=True).score == 1.0
    assert format_reward(NO_THOUGHT, thinking=False).score == 1.0
    assert format_reward(FORCED, thinking=True).score == 1.0
    wrong = format_reward(THOUGHT, thinking=False)
    assert wrong.score == 0.0 and wrong.details["reason"] == "non-empty thought in non-thinking mode"
    assert format_reward(NO_THOUGHT, thinking=True).details["reason"] == "empty thought in thinking mode"
    with pytest.raises(TypeError, match="must be a bool"):
        format_reward(THOUGHT, thinking="yes")


@pytest.mark.parametrize("completion, thinking, expected", [
    (THOUGHT, True, 1.0), (FORCED, True, 1.0), (NO_THOUGHT, False, 1.0),
    (NO_THOUGHT, True, 0.0), (THOUGHT, False, 0.0),
    ("The answer is 4.", False, 0.0),        # no block at all: non-thinking still needs the empty block
    ("<think>\nlong thought", True, 0.0),    # an unfinished thought does not comply
    ("Sure. <think>x</think>4", True, 0.0),  # malformed responses never comply
])
def test_think_mode_from_row_field(completion, thinking, expected):
    result = think_mode_reward(completion, thinking=thinking)
    assert result.score == expected and result.details["thinking_mode"] is thinking


def test_think_mode_from_message_flags():
    no_think = [{"role": "system", "content": "/no_think"}, {"role": "user", "content": "2+2?"}]
    think_again = no_think + [{"role": "assistant", "content": "4"}, {"role": "user", "content": "and 3+3? /think"}]
    assert think_mode_reward(NO_THOUGHT, messages=no_think).score == 1.0
    assert think_mode_reward(THOUGHT, messages=no_think).score == 0.0
    assert think_mode_reward(THOUGHT, messages=think_again).score == 1.0
    assert think_mode_reward(THOUGHT, messages=[{"role": "user", "content": "2+2?"}]).score == 1.0  # default
    # the row's explicit mode wins over the flags
    assert think_mode_reward(NO_THOUGHT, thinking=False, messages=think_again).score == 1.0


def test_think_mode_without_a_mode_raises():
    with pytest.raises(ValueError, match="'thinking'.*'messages'.*\\['answer', 'task'\\]"):
        think_mode_reward(THOUGHT, task="math", answer="4")
