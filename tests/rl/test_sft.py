"""Fusion SFT (rl/thinking/sft.py): config, chat encoding (loss on the final assistant turn), and `rl sft` end to end."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rl.config import ConfigError
from rl.thinking.fusion_data import arithmetic_fusion_rows, write_rows
from rl.models import qwen3_tokenizer_dir
from rl.config import SFTConfig, load_config
from rl.thinking.sft import batch_order, collate, encode_chat, encode_all
from rl.thinking.tags import EMPTY_THINK, parse_thinking, wants_thinking
from tests.helpers import ROOT



@pytest.fixture(scope="module")
def qwen():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(qwen3_tokenizer_dir()))


def chat(user: str, assistant: str, history: list | None = None) -> list[dict]:
    return (history or []) + [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


# ------------------------------------------------------------------------------------------------ config
def test_shipped_sft_config_loads_and_its_data_exists():
    cfg = load_config(ROOT / "configs/sft_tiny.yaml", kind=SFTConfig)
    assert cfg.samples_per_step == cfg.sft.batch_size == 8
    assert (ROOT / cfg.sft.data).is_file()


@pytest.mark.parametrize("override, message", [
    ("rollout.group_size=4", "not used by `rl sft`"),
    ("run.steps=3", "run.steps: not used by `rl sft`"),
    ("learner.mini_batches=2", "one optimizer step per batch"),
    ("sft.batch_size=0", "sft.batch_size must be >= 1"),
    ("sft.bach_size=4", "did you mean 'batch_size'"),
])
def test_sft_config_rejects_what_it_does_not_use(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(ROOT / "configs/sft_tiny.yaml", [override], kind=SFTConfig)


def test_batch_size_must_split_over_ranks():
    with pytest.raises(ConfigError, match="multiple of the number of ranks"):
        load_config(None, ["sft.batch_size=3", "learner.num_workers=2"], kind=SFTConfig)


# ---------------------------------------------------------------------------------------------- encoding
def test_loss_covers_exactly_the_final_assistant_turn(qwen):
    messages = chat("2+2? /no_think", EMPTY_THINK + "4", history=chat("1+1? /think", "<think>\nadd\n</think>\n\n2"))
    ids, mask = encode_chat(qwen, messages)
    assert len(ids) == len(mask) and mask[-1] == 1
    start = mask.index(1)
    assert all(mask[start:]) and not any(mask[:start])           # one contiguous trained span at the end
    trained = qwen.decode(ids[start:])
    # the non-thinking response is trained WITH its empty think block (the model writes it itself)
    assert trained == EMPTY_THINK + "4<|im_end|>"
    assert "add" not in qwen.decode(ids[:start])                  # Qwen3 drops earlier turns' thoughts


def test_thinking_response_trains_its_thought(qwen):
    ids, mask = encode_chat(qwen, chat("2+2?", "<think>\n2 plus 2\n</think>\n\n4"))
    trained = qwen.decode([i for i, m in zip(ids, mask) if m])
    assert trained == "<think>\n2 plus 2\n</think>\n\n4<|im_end|>"


@pytest.mark.parametrize("messages", [
    chat("2+2? /no_think", "<think>\nthinking anyway\n</think>\n\n4"),    # thought after /no_think
    chat("2+2? /think", EMPTY_THINK + "4"),                               # empty block after /think
    chat("2+2?", "4"),                                                    # no flag = thinking, but no thought
])
def test_a_response_that_ignores_its_flag_is_a_data_error(qwen, messages):
    with pytest.raises(ValueError, match="does not follow the mode"):
        encode_chat(qwen, messages)
    with pytest.raises(ConfigError, match="data.jsonl: row 1"):
        encode_all(qwen, [messages], 512, "data.jsonl")


def test_long_rows_are_errors_naming_the_row(qwen):
    with pytest.raises(ConfigError, match="row 1 is .* tokens, over sft.max_seq_len=8"):
        encode_all(qwen, [chat("2+2? /no_think", EMPTY_THINK + "4")], 8, "data.jsonl")


def test_collate_and_batch_order():
    batch = collate([([1, 2, 3], [0, 1, 1]), ([4, 5], [0, 1])], pad_id=0)
    assert batch.input_ids.tolist() == [[1, 2, 3], [4, 5, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]] and batch.loss_mask.tolist() == [[0, 1, 1], [0, 1, 0]]
    steps = batch_order(10, 4, epochs=2, seed=0)
    assert len(steps) == 4 and all(len(s) == 4 for s in steps)      # 2 full batches per epoch, 2 rows dropped
    assert len(set(steps[0] + steps[1])) == 8 and steps[:2] != steps[2:]
    assert steps == batch_order(10, 4, epochs=2, seed=0)


def test_procedural_fusion_rows_are_mixed_and_consistent(qwen):
    rows = arithmetic_fusion_rows(200, seed=1)
    modes = [r["thinking"] for r in rows]
    assert 60 < sum(modes) < 140
    assert any(len(r["messages"]) > 2 for r in rows)                  # multi-turn rows
    assert any(r["messages"][0]["role"] == "system" for r in rows)    # flag in a system message
    for r in rows:
        assert wants_thinking(r["messages"][:-1]) == r["thinking"]
        parse = parse_thinking(r["messages"][-1]["content"])
        assert parse.status == ("ok" if r["thinking"] else "empty") and parse.answer == r["answer"]
    assert arithmetic_fusion_rows(20, seed=1) == rows[:20]
    encode_all(qwen, [r["messages"] for r in rows], 512, "generated")  # every row is valid SFT data


# ------------------------------------------------------------------------------------------- end to end
@pytest.mark.ray
@pytest.mark.slow
def test_rl_sft_on_the_tiny_model_lowers_the_loss(tiny_model: Path, tmp_path: Path):
    from rl.cli import main

    data = tmp_path / "mixed.jsonl"
    write_rows(arithmetic_fusion_rows(32, seed=0), data)
    out = tmp_path / "run"
    rc = main(["sft", str(ROOT / "configs/sft_tiny.yaml"), "--output-dir", str(out), "--model.path", str(tiny_model),
               "--sft.data", str(data), "--sft.epochs", "3", "--learner.lr", "3e-3", "--learner.warmup_steps", "0",
               "--logging.progress_bar", "false", "--logging.wandb_mode", "disabled"])
    assert rc == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, 13))        # 3 epochs x 4 batches of 8
    losses = [r["loss/sft"] for r in records]
    assert all(r["sft/tokens"] > 0 and r["actor/grad_norm"] > 0 for r in records)
    # a random model starts near ln(vocab) ~ 11.9 nats; the repeated template and digits are learned fast
    assert sum(losses[-3:]) / 3 < losses[0] - 1.5 and losses[-1] < losses[6] < losses[0], losses
    assert (out / "checkpoints" / "step_000012" / "model" / "config.json").exists()
    saved = load_config(out / "config.yaml", kind=SFTConfig)                     # the run's config reloads as it ran
    assert saved.sft.epochs == 3 and saved.sft.data == str(data) and saved.learner.lr == 3e-3
