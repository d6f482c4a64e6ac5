"""`rl build-fusion-data` (rl/thinking/fusion_data.py): which samples rejection sampling keeps, and a run on the tiny model."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl.thinking.fusion_data import select
from rl.thinking.tags import with_flag
from rl.thinking.tags import EMPTY_THINK, STOP_THINKING, wants_thinking
from tests.helpers import TESTS

THOUGHT = "<think>\n2 plus 2 is 4\n</think>\n\n4"


@pytest.mark.parametrize("completion, thinking, reward, expected", [
    (THOUGHT, True, 1.0, "kept"),
    (THOUGHT, True, 1.5, "kept"),
    (THOUGHT, True, 0.5, "reward"),                                  # the reward does not accept it
    (THOUGHT, True, None, "reward"),                                 # no applicable reward: not accepted
    ("<think>\nlong thought " + STOP_THINKING + "4", True, 1.0, "malformed_budget_forced"),
    ("<think>\nstill thinking", True, 1.0, "malformed_unclosed"),
    (EMPTY_THINK + "4", True, 1.0, "malformed_empty"),               # no thought in thinking mode
    ("<think>\nx\n</think>\n\n", True, 1.0, "malformed_no_answer"),
    (EMPTY_THINK + "4", False, 0.0, "kept"),                         # non-thinking: no reward filter by default
    (THOUGHT, False, 1.0, "malformed_ok"),                           # a thought in non-thinking mode
    ("4", False, 1.0, "malformed_no_think_block"),
])
def test_select(completion, thinking, reward, expected):
    response, reason = select(completion, thinking, reward, threshold=1.0, no_think_threshold=None)
    assert reason == expected
    assert (response is not None) == (expected == "kept")


def test_selected_responses_are_normalised_and_no_think_threshold_applies():
    assert select("<think>\n\n2 plus 2\n\n</think>\n\n 4 ", True, 1.0, 1.0, None)[0] == "<think>\n2 plus 2\n</think>\n\n4"
    assert select(EMPTY_THINK + "4", False, 1.0, 1.0, None)[0] == EMPTY_THINK + "4"
    assert select(EMPTY_THINK + "5", False, 0.0, 1.0, no_think_threshold=0.5) == (None, "reward")


@pytest.mark.parametrize("content, thinking, expected", [
    ("2+2?", True, "2+2?"),                       # no flag already means thinking
    ("2+2?", False, "2+2? /no_think"),
    ("2+2? /no_think", False, "2+2? /no_think"),
    ("2+2? /no_think", True, "2+2? /no_think /think"),
    ("2+2? /think", False, "2+2? /think /no_think"),
])
def test_with_flag(content, thinking, expected):
    messages = [{"role": "user", "content": content}]
    flagged = with_flag(messages, thinking)
    assert flagged[-1]["content"] == expected and wants_thinking(flagged) == thinking
    assert messages[0]["content"] == content      # the task's row is not modified


def test_keep_samples_caps_per_prompt_counts_and_flags_the_user_turn():
    from envs.tasks import load_task
    from rewards.spec import ScoreResult
    from rl.config import TaskConfig
    from rl.thinking.fusion_data import FusionStats, keep_samples
    from rl.types import RolloutRequest

    task = load_task(TaskConfig(name="arithmetic", size=10, eval_size=2), 0)
    row = task.train[0]
    modes = [False, False, False, True, True]
    requests = [RolloutRequest(uid="1-0" if not m else "1-1", task="arithmetic", prompt_ids=[1], max_new_tokens=8,
                               thinking=m) for m in modes]
    completions = [EMPTY_THINK + "4"] * 3 + [THOUGHT, "<think>\nunfinished"]
    scored = [ScoreResult(1.0, {}, {}, False, {}) for _ in modes]
    stats = FusionStats()
    kept = keep_samples(requests, [row] * 5, completions, scored, {"arithmetic": task}, stats, threshold=1.0,
                        no_think_threshold=None, per_prompt=2)
    assert [k["thinking"] for k in kept] == [False, False, True]
    assert stats.as_dict() == {"sampled": {"no_think": 3, "think": 2}, "kept": {"no_think": 2, "think": 1},
                               "rejected": {"no_think/per_prompt": 1, "think/malformed_unclosed": 1}}
    assert kept[0]["messages"][-2] == {"role": "user", "content": row["prompt"] + " /no_think"}
    assert kept[2]["messages"][-2] == {"role": "user", "content": row["prompt"]}   # no flag: thinking
    assert kept[2]["messages"][-1] == {"role": "assistant", "content": THOUGHT}
    # with a threshold of 0 every prompt keeps a response: its best-scored well-formed one, not its first
    scored = [ScoreResult(r, {}, {}, False, {}) for r in (0.0, 0.5, 0.2, 0.0, 0.0)]
    answers = [EMPTY_THINK + a for a in ("3", "4", "5")] + [THOUGHT, THOUGHT]
    kept = keep_samples(requests, [row] * 5, answers, scored, {"arithmetic": task}, FusionStats(), threshold=0.0,
                        no_think_threshold=0.0, per_prompt=1)
    assert [(k["thinking"], k["reward"], k["messages"][-1]["content"]) for k in kept] == [
        (False, 0.5, EMPTY_THINK + "4"), (True, 0.0, THOUGHT)]


@pytest.mark.ray
@pytest.mark.slow
def test_build_fusion_data_on_the_tiny_model(tiny_model: Path, tmp_path: Path):
    from transformers import AutoTokenizer

    from rl.cli import main
    from rl.thinking.sft import encode_chat
    from tests.helpers import tiny_overrides

    out = tmp_path / "fusion.jsonl"
    overrides = tiny_overrides(tiny_model, tmp_path / "unused", **{
        "rollout.backend": "hf", "rollout.prompts_per_step": 4, "rollout.max_new_tokens": 16,
        # `overlong` needs the row fields only a rollout knows (response_tokens, max_new_tokens): samples
        # are scored by the same round as in `rl train`, so it scores in [-1, 0] instead of failing.
        "data.tasks": ("[{name: arithmetic, size: 64, eval_size: 8, thinking_ratio: 0.5, thinking_budget: 4, "
                       "rewards: [{name: overlong}]}]")})
    rc = main(["build-fusion-data", str(TESTS.parent / "configs/tiny.yaml"), "--out", str(out), "--prompts", "8",
               "--threshold", "0", "--no-think-threshold", "-1", "--per-prompt", "2", *overrides])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # 8 prompts x group of 4; a random model never writes a proper thought, so only non-thinking
    # samples (empty block + some text) pass, at most 2 per prompt.
    assert rows and all(not r["thinking"] for r in rows) and len(rows) <= 2 * 8
    assert all(-1.0 <= r["reward"] <= 0.0 for r in rows)  # an overlong reward that failed is None: rejected
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model))
    for row in rows:
        assert wants_thinking(row["messages"][:-1]) is False
        assert row["messages"][-1]["content"].startswith(EMPTY_THINK)
        encode_chat(tokenizer, row["messages"])  # usable by `rl sft` as it is
