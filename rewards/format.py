"""Format rewards for thinking-mode fusion: tag structure (`format`) and mode compliance (`think_mode`).

Both read the raw response, think block included (`raw_completion=True`). The raw response is the
text after the prompt's generation header: `rl.thinking.tags.response_prefix(prompt) + generated`, so a
Qwen3 non-thinking sample, whose prompt already holds the empty think block, still shows it here.

    format_reward("<think>\\nx\\n</think>\\n\\n42")                       # 1.0
    format_reward("<think>\\nx\\n</think>\\n\\n42", thinking=False)       # 0.0: /no_think asked
    think_mode_reward("<think>\\n\\n</think>\\n\\n42", messages=[{"role": "user", "content": "q /no_think"}])  # 1.0

A malformed response is model output, so it scores 0.0 (with `details["status"]`); a row whose
`thinking` field is not a bool, or a `think_mode` row with neither `thinking` nor `messages`, is a
data bug and raises.
"""
from __future__ import annotations

from typing import Any

from rewards.base import RewardResult, reward_spec
from rl.thinking.tags import ThinkParse, complies, parse_thinking, wants_thinking


@reward_spec(raw_completion=True)
def format_reward(completion: str, *, min_answer_chars: int = 1, max_answer_chars: int | None = None,
                  max_thinking_chars: int | None = None, thinking: bool | None = None, **row: Any) -> RewardResult:
    """1.0 for one think block (possibly empty) followed by an answer within the length limits, else 0.0.

    When the row says which mode the prompt asked for (`thinking`: bool), the block must match it too:
    a thought in thinking mode, an empty block in non-thinking mode. Lengths are in characters of the
    stripped answer / thought. details: status (see rl.thinking.tags.ThinkParse), reason when 0.0, lengths.
    """
    parse = parse_thinking(completion)
    details: dict[str, Any] = {"status": parse.status, "answer_chars": len(parse.answer),
                               "thinking_chars": len(parse.thinking)}
    reason = _format_problem(parse, min_answer_chars, max_answer_chars, max_thinking_chars,
                             _asked_mode(thinking, None))
    if reason:
        # Malformed model output (bad tags, wrong mode, empty or overlong answer): score 0, say why.
        return RewardResult(0.0, {**details, "reason": reason})
    return RewardResult(1.0, details)


def _format_problem(parse: ThinkParse, min_answer: int, max_answer: int | None, max_thinking: int | None,
                    mode: bool | None) -> str | None:
    """Why a parsed response fails the format rules, or None when it passes."""
    if not parse.well_formed:
        return f"malformed think block ({parse.status})"
    if mode is not None and not complies(parse, mode):
        return "empty thought in thinking mode" if mode else "non-empty thought in non-thinking mode"
    if len(parse.answer) < min_answer:
        return f"answer shorter than {min_answer} chars"
    if max_answer is not None and len(parse.answer) > max_answer:
        return f"answer longer than {max_answer} chars"
    if max_thinking is not None and len(parse.thinking) > max_thinking:
        return f"thought longer than {max_thinking} chars"
    return None


@reward_spec(raw_completion=True)
def think_mode_reward(completion: str, *, thinking: bool | None = None,
                      messages: list[dict[str, Any]] | None = None, **row: Any) -> RewardResult:
    """1.0 when the response follows the asked mode, else 0.0 (rl.thinking.tags.complies).

    The mode is the row's `thinking` (bool, set by the rollout that chose it) or, without it,
    `wants_thinking(messages)` (the /think and /no_think flags). Thinking mode needs one block with a
    non-empty thought; non-thinking mode needs one empty block. A row with neither field raises
    ValueError: without a mode there is nothing to comply with, and a silent None would hide it.
    """
    mode = _asked_mode(thinking, messages)
    if mode is None:
        raise ValueError("reward 'think_mode' needs row field 'thinking' (bool) or 'messages' (the chat "
                         f"with its /think or /no_think flags); the row has {sorted(row)}. Add one of them.")
    parse = parse_thinking(completion)
    # A response in the wrong mode or with broken tags is model output: 0.0, not an error.
    return RewardResult(float(complies(parse, mode)), {"status": parse.status, "thinking_mode": mode})


def _asked_mode(thinking: bool | None, messages: list[dict[str, Any]] | None) -> bool | None:
    if thinking is not None:
        if not isinstance(thinking, bool):
            raise TypeError(f"row field 'thinking' must be a bool (the asked mode), got {type(thinking).__name__} "
                            f"{thinking!r}; store true/false in the dataset")
        return thinking
    return None if messages is None else wants_thinking(messages)
