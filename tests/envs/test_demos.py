"""Agent cold-start data: the scripted policies (envs/agents/demos.py) solve their envs from what a model
sees, their episodes become SFT rows (rl/agent_data.py), and `rl sft` encodes such a row token for token
as the agent loop builds the same episode (rl/thinking/sft.py `encode_episode`)."""
from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from envs.tasks import load_task
from rl.agent_data import build_agent_data, demo_episode
from rl.config import ConfigError, load_config
from rl.models import qwen3_tokenizer_dir
from rl.rollout.agent_loop import AgentRollouts
from rl.task_config import TaskConfig
from rl.thinking.chat import render_chat
from rl.thinking.sft import encode_all, encode_episode, read_chats
from rl.thinking.tags import EMPTY_THINK, with_flag
from rl.types import RolloutRequest
from tests.agent_helpers import FakeEngine
from tests.helpers import ROOT

HIDDEN = {"agent_game": ("secret",), "agent_python": ("answer",), "agent_store": ("goal",)}
"""Row fields the env scores with and a policy must not read."""


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


def task(name: str, size: int = 12):
    return load_task(TaskConfig(name=name, size=size, eval_size=0), 0)


@pytest.mark.parametrize("name", ["agent_game", "agent_python", "agent_store"])
def test_scripted_policies_win_every_episode_without_the_hidden_fields(name, monkeypatch):
    from envs.agents import demos

    t = task(name)
    policy = demos.DEMO_POLICIES[t.env]
    # The policy sees the row without what the env scores with: a KeyError here would mean it peeks.
    monkeypatch.setitem(demos.DEMO_POLICIES, t.env,
                        lambda row, transcript: policy({k: v for k, v in row.items() if k not in HIDDEN[name]}, transcript))
    episodes = [demo_episode(t, row) for row in t.train]
    assert all(e is not None for e in episodes)
    turns = [m for e in episodes for m in e["messages"] if m["role"] == "assistant"]
    assert all(m["content"].startswith(EMPTY_THINK) for m in turns)  # non-thinking turns, as the flag asks
    assert all(any("/no_think" in m["content"] for m in e["messages"] if m["role"] == "user") for e in episodes)
    if name != "agent_game":  # the tool envs: a call first, an answer last
        assert all("<tool_call>" in [m for m in e["messages"] if m["role"] == "assistant"][0]["content"] for e in episodes)


def test_a_failed_episode_is_not_kept(monkeypatch):
    from envs.agents import demos

    monkeypatch.setitem(demos.DEMO_POLICIES, "guess_number", lambda row, transcript: "0")  # always out of range
    t = task("agent_game")
    assert demo_episode(t, t.train[0]) is None


@pytest.mark.parametrize("name", ["agent_game", "agent_python"])
def test_an_episode_row_encodes_as_the_agent_loop_builds_it(name, tok):
    t = task(name, size=3)
    row = t.train[1]
    demo = demo_episode(t, row)
    replies = iter(m["content"] for m in demo["messages"] if m["role"] == "assistant")
    messages, tools = t.chat(row, False)
    prompt = render_chat(tok, with_flag(messages, False), thinking=True, tools=tools)  # the soft switch's prompt
    req = RolloutRequest(uid="0", task=name, prompt_ids=tok.encode(prompt, add_special_tokens=False),
                         max_new_tokens=2048, thinking=False, env=t.env, row=row, soft_switch=True)
    rollout = AgentRollouts(FakeEngine(tok, lambda context: next(replies)), tok).run([req])[0]
    assert rollout.env_info["success"] is True
    ids, mask = encode_episode(tok, demo["messages"], demo["tools"])
    assert ids == req.prompt_ids + rollout.response_ids
    assert mask == [0] * len(req.prompt_ids) + rollout.loss_mask


def test_rl_build_agent_data_writes_rows_rl_sft_reads(tmp_path, tok):
    cfg = load_config(ROOT / "configs" / "agent_tiny.yaml", ["data.tasks.0.size=10", "data.tasks.1.size=10"])
    out = tmp_path / "demos.jsonl"
    counts = build_agent_data(cfg, out, episodes=5)
    assert counts == {"agent_game": {"played": 5, "kept": 5}, "agent_python": {"played": 5, "kept": 5}}
    rows = read_chats(out)
    assert [r["loss"] for r in rows] == ["assistant"] * 10 and rows[-1]["tools"][0]["function"]["name"] == "python"
    encoded = encode_all(tok, rows, 2048, out)
    trained = [tok.decode([i for i, m in zip(ids, mask) if m]) for ids, mask in encoded]
    assert all(text.count("<|im_end|>") == sum(m["role"] == "assistant" for m in r["messages"])
               for text, r in zip(trained, rows))  # every assistant turn, each with its end token, nothing else
    assert "<tool_response>" not in "".join(trained)


def test_rows_with_a_bad_loss_or_no_agent_task_are_named(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "x"}],
                               "loss": "all"}) + "\n")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: `loss` is 'all'"):
        read_chats(bad)
    with pytest.raises(ConfigError, match="no agent task with a scripted policy"):
        build_agent_data(load_config(ROOT / "configs" / "tiny.yaml"), tmp_path / "x.jsonl", 2)
