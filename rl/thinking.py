"""Thinking-mode fusion (Qwen3 Technical Report, section 4.3): flags, chat rendering, parsing, budget.

One model answers in two modes:
- thinking (the default): the response is `<think>\\n{thought}\\n</think>\\n\\n{answer}`;
- non-thinking: the response keeps an EMPTY think block, `<think>\\n\\n</think>\\n\\n{answer}`.
A user or system message switches the mode with the flags `/think` and `/no_think` (the last flag in the
dialog wins, see `wants_thinking`). A thinking budget cuts a long thought: the rollout backend stops
generation after `budget` tokens without `</think>`, appends `STOP_THINKING` and lets the model answer
(see `ThinkingBudget`).

Who puts the think block where (this decides what a completion looks like):
- Qwen3's own template (`enable_thinking`) ends a non-thinking prompt with `EMPTY_THINK` and leaves a
  thinking prompt at `<|im_start|>assistant\\n`, so the model writes `<think>` itself. The project
  template (`render_project_chat`, for tokenizers whose template does not know `enable_thinking`) does
  the same, so both families produce completions of the same shape.
- Some templates (QwQ, Qwen3-2507 thinking models) end the prompt with `<think>\\n`: the completion
  then starts inside the block.
So the *response* that `parse_thinking` and the format rewards judge is `response_prefix(prompt)` +
generated text: the part of the think block that the prompt already holds, then what the model wrote.
Rollout backends hand rewards that response as the raw completion.

    from rl.thinking import render_chat, parse_thinking
    prompt = render_chat(tokenizer, [{"role": "user", "content": "2+2? /no_think"}])
    parse = parse_thinking(response_prefix(prompt) + generated)   # parse.status == "empty"
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Collection, Sequence

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
        for match in _FLAG.finditer(_content(message)):
            mode = match.group(1) == "think"
    return mode


def _content(message: dict[str, Any]) -> str:
    content = message.get("content")
    if content is None:
        return ""
    if not isinstance(content, str):
        raise TypeError(f"message content must be a string, got {type(content).__name__} in {message!r:.120}; "
                        "flatten multimodal content parts to text before rendering")
    return content


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


# ------------------------------------------------------------------------------------------- rendering
def template_knows_thinking(tokenizer: Any | None) -> bool:
    """Whether the tokenizer's own chat template takes `enable_thinking` (Qwen3 and its descendants)."""
    template = None if tokenizer is None else tokenizer.chat_template
    return isinstance(template, str) and "enable_thinking" in template


def render_chat(tokenizer: Any | None, messages: Sequence[dict[str, Any]], *, thinking: bool | None = None,
                tools: Sequence[dict[str, Any]] | None = None, add_generation_prompt: bool = True) -> str:
    """The prompt text for `messages` in the asked mode (None: `wants_thinking(messages)`).

    A tokenizer whose template knows `enable_thinking` renders with its own template, so prompts are
    exactly those the model was trained on; any other tokenizer (a plain ChatML template such as
    SmolLM2's, or none at all) gets the project template, `render_project_chat`.
    """
    mode = wants_thinking(messages) if thinking is None else thinking
    if template_knows_thinking(tokenizer):
        return tokenizer.apply_chat_template(list(messages), tools=tools, tokenize=False,
                                             add_generation_prompt=add_generation_prompt, enable_thinking=mode)
    return render_project_chat(messages, thinking=mode, tools=tools, add_generation_prompt=add_generation_prompt)


def render_chat_ids(tokenizer: Any, messages: Sequence[dict[str, Any]], *, thinking: bool | None = None,
                    tools: Sequence[dict[str, Any]] | None = None, add_generation_prompt: bool = True) -> list[int]:
    """Token ids of `render_chat(...)`; the template carries its own special tokens, so none are added
    (this is what `apply_chat_template(tokenize=True)` does too)."""
    text = render_chat(tokenizer, messages, thinking=thinking, tools=tools,
                       add_generation_prompt=add_generation_prompt)
    return list(tokenizer.encode(text, add_special_tokens=False))


_TOOLS_HEADER = (
    "# Tools\n\nYou can call the functions below to help with the user's request. Their signatures, "
    "in JSON, are inside <tools></tools>:\n<tools>"
)
_TOOLS_FOOTER = (
    "\n</tools>\n\nTo call a function, write a JSON object with its name and arguments inside "
    "<tool_call></tool_call> tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>\nResults come back inside <tool_response></tool_response> tags."
)


def render_project_chat(messages: Sequence[dict[str, Any]], *, thinking: bool = True,
                        tools: Sequence[dict[str, Any]] | None = None, add_generation_prompt: bool = True) -> str:
    """The project's ChatML template with Qwen3's thinking and tool conventions, for any tokenizer.

    Structure (`<|im_start|>{role}\\n{content}<|im_end|>\\n` turns):
    - tools: one system turn = the system message (if first) + "\\n\\n" + a `# Tools` section listing
      each tool as one JSON line inside `<tools></tools>` and asking for Hermes calls
      `<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`;
    - assistant `tool_calls` are written in that form after the content (one per line);
    - consecutive `tool` messages form ONE user turn, each result inside
      `\\n<tool_response>\\n{content}\\n</tool_response>`;
    - assistant turns before the last real user query lose their thought (Qwen3 drops the reasoning
      of earlier turns); turns after it (the agent loop of the current query) keep
      `<think>\\n{reasoning}\\n</think>\\n\\n` when they have a reasoning (or are the last message).
      The reasoning comes from `reasoning_content` or from a `</think>` in the content;
    - generation prompt: `<|im_start|>assistant\\n`, then EMPTY_THINK in non-thinking mode and nothing
      in thinking mode (the model writes `<think>` itself, as with Qwen3's template).
    Without tools, this is character for character what Qwen3's template renders (tests check it).
    """
    messages = list(messages)
    parts: list[str] = []
    system_first = bool(messages) and messages[0].get("role") == "system"
    if tools:
        head = _content(messages[0]) + "\n\n" if system_first else ""
        listing = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
        parts.append(f"<|im_start|>system\n{head}{_TOOLS_HEADER}{listing}{_TOOLS_FOOTER}<|im_end|>\n")
    elif system_first:
        parts.append(f"<|im_start|>system\n{_content(messages[0])}<|im_end|>\n")
    last_query = _last_query_index(messages)
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "system" and i == 0:
            continue
        if role in ("user", "system"):
            parts.append(f"<|im_start|>{role}\n{_content(message)}<|im_end|>\n")
        elif role == "assistant":
            parts.append(_render_assistant(message, keep_thought=i > last_query, is_last=i == len(messages) - 1))
        elif role == "tool":
            opens = i == 0 or messages[i - 1].get("role") != "tool"
            closes = i == len(messages) - 1 or messages[i + 1].get("role") != "tool"
            parts.append(("<|im_start|>user" if opens else "")
                         + f"\n<tool_response>\n{_content(message)}\n</tool_response>"
                         + ("<|im_end|>\n" if closes else ""))
        else:
            raise ValueError(f"message {i} has role {role!r}; the chat template knows system, user, assistant, tool")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n" + ("" if thinking else EMPTY_THINK))
    return "".join(parts)


def _last_query_index(messages: list[dict[str, Any]]) -> int:
    """Index of the last user message that is a real query, not a wrapped tool result (Qwen3's rule)."""
    for i in range(len(messages) - 1, -1, -1):
        text = _content(messages[i]) if messages[i].get("role") == "user" else None
        if text is not None and not (text.startswith("<tool_response>") and text.endswith("</tool_response>")):
            return i
    return len(messages) - 1


def _render_assistant(message: dict[str, Any], *, keep_thought: bool, is_last: bool) -> str:
    content = _content(message)
    reasoning = message.get("reasoning_content")
    if reasoning is None:
        reasoning = ""
        if THINK_CLOSE in content:  # a response stored with its think block: split it like Qwen3 does
            head, _, _ = content.partition(THINK_CLOSE)
            reasoning = head.rstrip("\n").split(THINK_OPEN)[-1].lstrip("\n")
            content = content.split(THINK_CLOSE)[-1].lstrip("\n")
    text = "<|im_start|>assistant\n"
    if keep_thought and (is_last or reasoning):
        text += f"{THINK_OPEN}\n{reasoning.strip(chr(10))}\n{THINK_CLOSE}\n\n{content.lstrip(chr(10))}"
    else:
        text += content
    for k, call in enumerate(message.get("tool_calls") or ()):
        call = call.get("function", call)  # OpenAI nests {"type": "function", "function": {...}}
        arguments = call["arguments"]
        if not isinstance(arguments, str):
            arguments = json.dumps(arguments, ensure_ascii=False)
        text += ("\n" if k or content else "") + f'<tool_call>\n{{"name": "{call["name"]}", "arguments": {arguments}}}\n</tool_call>'
    return text + "<|im_end|>\n"


# ---------------------------------------------------------------------------------------------- budget
class ThinkingBudget:
    """Token-level thinking-budget rules for one tokenizer (pure: the rollout backend generates).

    The flow a backend runs for a thinking-mode sample with budget B:
      1. generate up to B tokens (phase 1);
      2. if `hit(ids, B)`: continue generating from prompt + `force(ids, B)`; the appended
         `stop_ids` were not sampled by the policy, so mask them out of the loss (like env tokens);
      3. else continue (or stop) as usual: the model closed its thought or ended by itself.
    The budget counts every generated token, including a `<think>` the model writes itself.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.stop_ids: list[int] = list(tokenizer.encode(STOP_THINKING, add_special_tokens=False))
        """STOP_THINKING tokenised once (it decodes back to exactly STOP_THINKING)."""
        close = tokenizer.convert_tokens_to_ids(THINK_CLOSE)
        # Only trust a single id when it really is `</think>`; otherwise (e.g. SmolLM2, where the tag
        # is several BPE pieces whose split depends on context) look for the tag in the decoded text.
        self.close_id: int | None = close if close is not None and tokenizer.decode([close]) == THINK_CLOSE else None

    def hit(self, ids: Sequence[int], budget: int, eos_ids: Collection[int] = ()) -> bool:
        """True when phase 1 ran the full budget and its first `budget` tokens hold no `</think>` and
        no end-of-sequence id (a generation that ended by itself is not cut)."""
        if budget < 0:
            raise ValueError(f"thinking budget must be >= 0 tokens, got {budget}")
        head = list(ids[:budget])
        if len(head) < budget or any(t in eos_ids for t in head):
            return False
        if self.close_id is not None:
            return self.close_id not in head
        return THINK_CLOSE not in self.tokenizer.decode(head)

    def thinking_tokens(self, ids: Sequence[int], *, prompt_opened_think: bool = False) -> int:
        """Tokens of `ids` that belong to the think block: up to and including the token that completes
        the first `</think>`; all of them when a block was opened (by `ids` or by the prompt) and never
        closed; 0 when there is no block at all."""
        ids = list(ids)
        if self.close_id is not None:
            if self.close_id in ids:
                return ids.index(self.close_id) + 1
        elif THINK_CLOSE in self.tokenizer.decode(ids):
            # The tag spans several BPE pieces here: binary-search the shortest prefix whose decoded
            # text holds it (having the tag is monotone in the prefix length), log2(n) decodes.
            low, high = 1, len(ids)
            while low < high:
                mid = (low + high) // 2
                low, high = (low, mid) if THINK_CLOSE in self.tokenizer.decode(ids[:mid]) else (mid + 1, high)
            return low
        return len(ids) if prompt_opened_think or THINK_OPEN in self.tokenizer.decode(ids) else 0

    def force(self, ids: Sequence[int], budget: int) -> list[int]:
        """The completion ids to continue from once the budget is hit: the first `budget` ids + stop_ids."""
        return list(ids[:budget]) + self.stop_ids


def sample_budget(spec: int | Sequence[int], rng: random.Random) -> int:
    """A thinking budget in tokens: `spec` itself when it is an int, else uniform in [low, high]
    (inclusive) for a (low, high) pair; sampling per prompt teaches answers at many cut points."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        low = high = spec
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and all(isinstance(v, int) for v in spec):
        low, high = spec
    else:
        raise ValueError(f"thinking budget must be an int or a [low, high] pair of ints, got {spec!r}")
    if not 0 <= low <= high:
        raise ValueError(f"thinking budget range needs 0 <= low <= high, got {spec!r}")
    return low if low == high else rng.randint(low, high)
