"""Chat rendering in the asked mode: the tokenizer's own template when it knows `enable_thinking`
(Qwen3), else the project's ChatML template with Qwen3's thinking and tool conventions.

    prompt = render_chat(tokenizer, [{"role": "user", "content": "2+2? /no_think"}])
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from rl.thinking.tags import EMPTY_THINK, THINK_CLOSE, THINK_OPEN, message_text, wants_thinking

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
        head = message_text(messages[0]) + "\n\n" if system_first else ""
        listing = "".join("\n" + json.dumps(tool, ensure_ascii=False) for tool in tools)
        parts.append(f"<|im_start|>system\n{head}{_TOOLS_HEADER}{listing}{_TOOLS_FOOTER}<|im_end|>\n")
    elif system_first:
        parts.append(f"<|im_start|>system\n{message_text(messages[0])}<|im_end|>\n")
    last_query = _last_query_index(messages)
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "system" and i == 0:
            continue
        if role in ("user", "system"):
            parts.append(f"<|im_start|>{role}\n{message_text(message)}<|im_end|>\n")
        elif role == "assistant":
            parts.append(_render_assistant(message, keep_thought=i > last_query, is_last=i == len(messages) - 1))
        elif role == "tool":
            opens = i == 0 or messages[i - 1].get("role") != "tool"
            closes = i == len(messages) - 1 or messages[i + 1].get("role") != "tool"
            parts.append(("<|im_start|>user" if opens else "")
                         + f"\n<tool_response>\n{message_text(message)}\n</tool_response>"
                         + ("<|im_end|>\n" if closes else ""))
        else:
            raise ValueError(f"message {i} has role {role!r}; the chat template knows system, user, assistant, tool")
    if add_generation_prompt:
        parts.append("<|im_start|>assistant\n" + ("" if thinking else EMPTY_THINK))
    return "".join(parts)


def _last_query_index(messages: list[dict[str, Any]]) -> int:
    """Index of the last user message that is a real query, not a wrapped tool result (Qwen3's rule)."""
    for i in range(len(messages) - 1, -1, -1):
        text = message_text(messages[i]) if messages[i].get("role") == "user" else None
        if text is not None and not (text.startswith("<tool_response>") and text.endswith("</tool_response>")):
            return i
    return len(messages) - 1


def _render_assistant(message: dict[str, Any], *, keep_thought: bool, is_last: bool) -> str:
    content = message_text(message)
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

