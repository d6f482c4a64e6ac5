"""The think block and the mode flags (Qwen3 Technical Report, section 4.3): a leaf module.

One model answers in two modes:
- thinking (the default): the response is `<think>\\n{thought}\\n</think>\\n\\n{answer}`;
- non-thinking: the response keeps an EMPTY think block, `<think>\\n\\n</think>\\n\\n{answer}`.
A user or system message switches the mode with the flags `/think` and `/no_think` (the last flag in the
dialog wins, see `wants_thinking`). `parse_thinking` splits a response into thought and answer and says
how well-formed it was; `complies` says whether it followed the asked mode.

Who puts the think block where (this decides what a completion looks like):
- Qwen3's own template (`enable_thinking`) ends a non-thinking prompt with `EMPTY_THINK` and leaves a
  thinking prompt at `<|im_start|>assistant\\n`, so the model writes `<think>` itself. The project
  template (rl/thinking/chat.py) does the same, so both families produce completions of the same shape.
- Some templates (QwQ, Qwen3-2507 thinking models) end the prompt with `<think>\\n`: the completion
  then starts inside the block.
So the *response* that `parse_thinking` and the format rewards judge is `response_prefix(prompt)` +
generated text: the part of the think block that the prompt already holds, then what the model wrote.

    parse = parse_thinking(response_prefix(prompt) + generated)   # parse.status == "empty"
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

STOP_THINKING = (
    "Considering the limited time by the user, I have to give the solution based on the thinking "
    "directly now.\n</think>.\n\n"
)
"""Appended when the thinking budget runs out (exact text of the Qwen3 report; note the '.' after the tag)."""
EMPTY_THINK = "<think>\n\n</think>\n\n"
"""The empty think block that opens every non-thinking response."""
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# The sentence of STOP_THINKING before `</think>`; a block that ends with it was closed by the budget.
_STOP_BODY = STOP_THINKING[: STOP_THINKING.index(THINK_CLOSE)]

# A flag is a whole token: preceded by start/whitespace, followed by end/whitespace/closing punctuation.
# So "/thinking", "a/think", "/think_more" are not flags, and the "/think" inside "/no_think" is not
# matched (it is preceded by "_"). Flags are case-sensitive, as Qwen3 was trained with lower case.
_FLAG = re.compile(r"(?<!\S)/(think|no_think)(?=$|[\s.,;:!?)\]}\"'])")
_TAG = re.compile(r"</?think>")


# ----------------------------------------------------------------------------------------------- flags
def wants_thinking(messages: Sequence[dict[str, Any]]) -> bool:
    """The mode a dialog asks for: the last `/think` or `/no_think` flag wins; no flag means thinking.

    Messages are scanned in order and each text left to right, so the last flag of the last flagged
    message decides. Only `user` and `system` messages count: a flag in an assistant turn or a tool
    result is content, not an instruction from the user.
    """
    mode = True
    for message in messages:
        if message.get("role") not in ("user", "system"):
            continue
        for match in _FLAG.finditer(message_text(message)):
            mode = match.group(1) == "think"
    return mode


def message_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise TypeError(f"message content must be a string, got {type(content).__name__} in {message!r:.120}; "
                        "flatten multimodal content parts to text before rendering")
    return content


def with_flag(messages: list[dict[str, Any]], thinking: bool) -> list[dict[str, Any]]:
    """Copy of `messages` that asks for the mode: as it is when its flags (or their absence, for
    thinking) already do, else with the mode's flag appended to the last user turn."""
    messages = [dict(m) for m in messages]
    if wants_thinking(messages) == thinking:
        return messages
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last_user]["content"] = f"{messages[last_user]['content']} {'/think' if thinking else '/no_think'}"
    return messages


# --------------------------------------------------------------------------------------------- parsing
STATUSES = ("ok", "empty", "budget_forced", "no_think_block", "unclosed", "text_before", "nested",
            "repeated", "stray_close")
"""Every `ThinkParse.status`, in the order they are reported by `mode_metrics`."""
WELL_FORMED = frozenset({"ok", "empty", "budget_forced"})
"""Statuses of a response with exactly one think block followed by the answer."""


@dataclass(frozen=True)
class ThinkParse:
    """A response split into its thought and its answer, with how well-formed the split was.

    status (checked in this order; the first that applies wins):
    - "no_think_block": no `<think>`/`</think>` tag at all; thinking = "", answer = the whole text.
    - "stray_close": a `</think>` with no `<think>` open before it. Usually the prompt opened the
      block (pass `prompt_opened_think=True` or prefix `response_prefix(prompt)`) or the model forgot
      `<think>`. thinking = the text before the last `</think>` (from the first `<think>` if any).
    - "unclosed": a `<think>` that is never closed. answer = "": an unfinished thought has no answer,
      so answer-judging rewards score 0 on it (the rule they rely on); thinking = all the text after
      the first `<think>`.
    - "nested": a `<think>` inside an open block (balanced, else "unclosed").
    - "repeated": several consecutive blocks; thinking spans from the first `<think>` to the last
      `</think>` (so it contains the inner tags), answer = the text after the last `</think>`.
    - "text_before": one block, but non-whitespace text before `<think>`.
    - "empty": one block with only whitespace in it: a non-thinking response.
    - "budget_forced": one block closed by STOP_THINKING (the budget ran out); its sentence stays in
      `thinking`, and the '.' that STOP_THINKING puts after `</think>` is not part of the answer.
    - "ok": one block with a thought, then the answer.
    In every status but "unclosed", answer = the text after the last `</think>` (the budget '.'
    removed), stripped; thinking is stripped too. WELL_FORMED holds "ok", "empty", "budget_forced".
    """

    thinking: str
    answer: str
    status: str

    @property
    def well_formed(self) -> bool:
        return self.status in WELL_FORMED


def split_thinking(text: str, *, prompt_opened_think: bool = False) -> tuple[str, str]:
    """(thinking, answer) of a response; the rules are those of `ThinkParse`."""
    parse = parse_thinking(text, prompt_opened_think=prompt_opened_think)
    return parse.thinking, parse.answer


def parse_thinking(text: str, *, prompt_opened_think: bool = False) -> ThinkParse:
    """Split `text` into thought and answer and classify its structure (see `ThinkParse`).

    prompt_opened_think: the prompt ended inside an open think block (`<think>\\n`), so `text` starts
    in the thought; it is parsed as if `<think>` preceded it.
    """
    if prompt_opened_think:
        text = THINK_OPEN + text
    tags = list(_TAG.finditer(text))
    if not tags:
        return ThinkParse("", text.strip(), "no_think_block")
    status = _structure(tags)
    if status == "unclosed":
        return ThinkParse(text[tags[0].end():].strip(), "", status)
    last_close = [m for m in tags if m.group() == THINK_CLOSE][-1].start()
    opens = [m for m in tags if m.group() == THINK_OPEN and m.start() < last_close]
    thinking = text[opens[0].end() if opens else 0:last_close]
    answer = text[last_close + len(THINK_CLOSE):]
    forced = thinking.endswith(_STOP_BODY) and answer.startswith(".")
    if forced:
        answer = answer[1:]  # STOP_THINKING writes "</think>." : the period belongs to the stop text
    if status is None:
        status = _single_block_status(text[:tags[0].start()], thinking, forced)
    return ThinkParse(thinking.strip(), answer.strip(), status)


def _structure(tags: list[re.Match[str]]) -> str | None:
    """Status from the tag sequence alone, or None for exactly one balanced block."""
    depth = max_depth = blocks = 0
    stray = False
    for tag in tags:
        if tag.group() == THINK_OPEN:
            depth += 1
            max_depth = max(max_depth, depth)
            continue
        if depth == 0:
            stray = True  # a close with nothing open: keep scanning at depth 0
            continue
        depth -= 1
        blocks += depth == 0
    if stray:
        return "stray_close"
    if depth > 0:
        return "unclosed"
    if max_depth > 1:
        return "nested"
    return "repeated" if blocks > 1 else None


def _single_block_status(before: str, thinking: str, forced: bool) -> str:
    if before.strip():
        return "text_before"
    if not thinking.strip():
        return "empty"
    return "budget_forced" if forced else "ok"


def complies(parse: ThinkParse, thinking: bool) -> bool:
    """Whether a response follows the asked mode: thinking needs one block with a thought ("ok" or
    "budget_forced"), non-thinking needs one empty block ("empty"). Malformed responses never comply."""
    return parse.status in ("ok", "budget_forced") if thinking else parse.status == "empty"


def response_prefix(prompt: str) -> str:
    """The part of the think block that a rendered prompt already holds ("" when none).

    Qwen3 in non-thinking mode ends the prompt with EMPTY_THINK; QwQ-style templates end it with an
    open `<think>\\n`. The response to parse is `response_prefix(prompt) + generated_text`.
    """
    if prompt.endswith(EMPTY_THINK):
        return EMPTY_THINK
    for opened in ("<think>\n", THINK_OPEN):
        if prompt.endswith(opened):
            return opened
    return ""


def assistant_response(thinking: str | None, answer: str) -> str:
    """A response in the fused format: EMPTY_THINK + answer when `thinking` is None or blank, else
    `<think>\\n{thinking}\\n</think>\\n\\n{answer}` (the form Qwen3's template renders)."""
    if not thinking or not thinking.strip("\n"):
        return EMPTY_THINK + answer.lstrip("\n")
    return f"{THINK_OPEN}\n{thinking.strip(chr(10))}\n{THINK_CLOSE}\n\n{answer.lstrip(chr(10))}"


def mode_metrics(parses: Sequence[ThinkParse], modes: Sequence[bool]) -> dict[str, float]:
    """Fractions for logging: `thinking/status_<name>` for every status, `thinking/asked_think` (share
    of samples asked to think) and `thinking/compliance` (share that followed the asked mode)."""
    if len(parses) != len(modes):
        raise ValueError(f"mode_metrics got {len(parses)} parses but {len(modes)} modes; pass one mode per sample")
    n = max(len(parses), 1)
    counts = Counter(p.status for p in parses)
    metrics = {f"thinking/status_{name}": counts[name] / n for name in STATUSES}
    metrics["thinking/asked_think"] = sum(bool(m) for m in modes) / n
    metrics["thinking/compliance"] = sum(complies(p, m) for p, m in zip(parses, modes)) / n
    return metrics

