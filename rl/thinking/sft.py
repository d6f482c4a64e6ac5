"""Fusion SFT (Qwen3 Technical Report, section 4.3): cross-entropy on mixed thinking / non-thinking chats,
trained by the same DeepSpeed Learner actors as GRPO.

    rl sft configs/sft_tiny.yaml [--output-dir runs/sft] [--sft.epochs 3 ...]

Data: a JSONL file, one conversation per line: `{"messages": [{"role": "user", "content": "... /no_think"},
{"role": "assistant", "content": "<think>\\n\\n</think>\\n\\n42"}]}` (any number of earlier turns, an
optional system message). `rl build-fusion-data` writes such files (rl/thinking/fusion_data.py), and
`configs/data/fusion_arithmetic.jsonl` ships a procedural one (`rl.thinking.fusion_data.arithmetic_fusion_rows`).
Optional row fields: `tools` (tool schemas the template lists in the system prompt) and `loss`:
"last" (default, below) or "assistant": every assistant turn is trained, the row encoded token for
token as an agent episode (`encode_episode`; `rl build-agent-data` writes such rows, rl/agent_data.py).

Loss: on the tokens of the FINAL assistant turn only (its think block, answer and end-of-turn token).
The prompt is rendered in thinking mode (`render_chat(..., thinking=True)`), which leaves the think
block to the response, so a non-thinking sample trains the model to write the empty block itself after
a `/no_think` flag (the report: "we retain an empty thinking block in the assistant's response"). Each
row is checked: its final response must follow the mode its dialog asks for (last flag wins).

A step is one optimizer step on `sft.batch_size` rows (split over the learner ranks); an epoch is a
seeded shuffle of the file; the last partial batch of an epoch is dropped. metrics.jsonl gets
`loss/sft` (token-mean cross-entropy), `sft/tokens`, `actor/grad_norm`, `actor/lr` and `time/step`;
checkpoints go to <run>/checkpoints/ as in `rl train`.
"""
from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import torch

from rl.config import ConfigError, SFTConfig
from rl.config_io import to_dict
from rl.thinking.tags import complies, parse_thinking, wants_thinking
from rl.thinking.chat import render_chat
from rl.types import SFTBatch

log = logging.getLogger("rl")

# ------------------------------------------------------------------------------------------------ data
def read_chats(path: str | Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file as a row {"messages", "tools", "loss"}; a malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sft.data: {path} does not exist; write one with `rl build-fusion-data` or point "
                          "sft.data at a JSONL file of {\"messages\": [...]} rows")
    chats = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            chats.append(sft_row(json.loads(line)))
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{path}:{n}: {exc}") from None
    if not chats:
        raise ConfigError(f"{path} holds no rows")
    return chats


def sft_row(row: Any) -> dict[str, Any]:
    """A data row with its defaults: `tools` None, `loss` "last"; checks the fields."""
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
        raise ValueError("each row needs `messages`, a list of chat messages ending with the assistant turn to "
                         "train on")
    loss = row.get("loss", "last")
    if loss not in LOSS_MODES:
        raise ValueError(f"`loss` is {loss!r}; use one of {list(LOSS_MODES)}")
    return {"messages": messages, "tools": row.get("tools"), "loss": loss}


LOSS_MODES = {"last": "the final assistant turn only", "assistant": "every assistant turn, as an agent episode"}
"""A row's `loss`: which assistant turns are trained on."""


def encode_chat(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
                ) -> tuple[list[int], list[int]]:
    """(input_ids, loss_mask) of one chat: loss 1 on the final assistant turn, through its end token.

    Prompt and response are tokenised separately, exactly as a rollout sees them (prompt ids, then
    generated ids), so the model learns the token boundary it will generate from.
    """
    prompt = render_chat(tokenizer, messages[:-1], thinking=True, tools=tools)
    full = render_chat(tokenizer, messages, thinking=True, add_generation_prompt=False, tools=tools)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the history differently with and without the final turn, "
                         "so the response cannot be cut off the prompt")
    response = full[len(prompt):].rstrip("\n")  # ends with the end-of-turn token, which is trained
    check_mode(messages[:-1], response)
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    response_ids = tokenizer.encode(response, add_special_tokens=False)
    return prompt_ids + response_ids, [0] * len(prompt_ids) + [1] * len(response_ids)


def check_mode(history: list[dict[str, Any]], response: str) -> None:
    asked = wants_thinking(history)
    if not complies(parse_thinking(response), asked):
        raise ValueError(f"the assistant response does not follow the mode the dialog asks for "
                         f"({'thinking' if asked else 'non-thinking'}; last flag wins, no flag = thinking): "
                         f"{response[:120]!r}")


def encode_episode(tokenizer: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
                   ) -> tuple[list[int], list[int]]:
    """(input_ids, loss_mask) of an agent episode: loss 1 on every assistant turn and its end token.

    Built token for token as the agent loop builds a rollout (rl/rollout/agent_loop.py): the prompt
    (messages up to the first assistant turn, with the tools), then per turn the turn's tokens and the
    end-of-turn token, then the env's messages as `ObservationTokens` render them (loss 0). So SFT trains
    on exactly the contexts agent RL samples in, not on a re-rendered history.
    """
    from rl.rollout.agent_loop import ObservationTokens

    first = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
    ids = tokenizer.encode(render_chat(tokenizer, messages[:first], thinking=True, tools=tools),
                           add_special_tokens=False)
    mask = [0] * len(ids)
    observations = ObservationTokens(tokenizer)
    end_id = tokenizer.encode(observations.turn_end, add_special_tokens=False)[0]
    i = first
    while i < len(messages):
        check_mode(messages[:i], messages[i]["content"])
        turn = tokenizer.encode(messages[i]["content"], add_special_tokens=False) + [end_id]
        j = next((k for k in range(i + 1, len(messages)) if messages[k]["role"] == "assistant"), len(messages))
        after = observations.ids(messages[i + 1:j], True, end_id) if j > i + 1 else []
        ids, mask = ids + turn + after, mask + [1] * len(turn) + [0] * len(after)
        i = j
    return ids, mask


def encode_all(tokenizer: Any, chats: list[Any], max_len: int, where: Any) -> list[tuple[list[int], list[int]]]:
    """Every row (a `read_chats` row, or a bare list of messages) encoded; errors name the row."""
    encoded = []
    for i, chat in enumerate(chats):
        row = chat if isinstance(chat, dict) else {"messages": chat, "tools": None, "loss": "last"}
        encode = encode_episode if row["loss"] == "assistant" else encode_chat
        try:
            ids, mask = encode(tokenizer, row["messages"], row["tools"])
        except ValueError as exc:
            raise ConfigError(f"{where}: row {i + 1}: {exc}") from None
        if len(ids) > max_len:
            raise ConfigError(f"{where}: row {i + 1} is {len(ids)} tokens, over sft.max_seq_len={max_len}; "
                              "raise sft.max_seq_len or drop the row")
        encoded.append((ids, mask))
    return encoded


def collate(rows: list[tuple[list[int], list[int]]], pad_id: int) -> SFTBatch:
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    loss_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (ids, mask) in enumerate(rows):
        input_ids[i, :len(ids)] = torch.tensor(ids)
        attention[i, :len(ids)] = 1
        loss_mask[i, :len(ids)] = torch.tensor(mask)
    return SFTBatch(input_ids, attention, loss_mask)


def batch_order(n: int, batch_size: int, epochs: int, seed: int) -> list[list[int]]:
    """Row indices of every step: per epoch a seeded shuffle cut into full batches (the rest dropped)."""
    steps = []
    for epoch in range(epochs):
        order = list(range(n))
        random.Random(f"{seed}-sft-{epoch}").shuffle(order)
        steps += [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]
    return steps


def planned_steps(cfg: SFTConfig) -> int:
    """How many optimizer steps `sft(cfg)` runs over its data."""
    steps = len(batch_order(len(read_chats(cfg.sft.data)), cfg.sft.batch_size, cfg.sft.epochs, cfg.run.seed))
    return min(steps, cfg.sft.max_steps) if cfg.sft.max_steps else steps


# ------------------------------------------------------------------------------------------- the loop
def sft(cfg: SFTConfig, resume: bool = False) -> Path:
    """Run fusion SFT as configured; returns the run folder. `resume`: continue from the folder's last
    checkpoint (its weights and, when saved, optimizer state), skipping the steps it holds."""
    import ray
    from transformers import AutoTokenizer

    from rl.actors import create_learners, init_ray, save_checkpoint
    from rl.checkpoint import prepare_run_dir
    from rl.metrics import RunLogger
    from rl.models import resolve_model_path

    # 1. Everything that can be checked before any actor starts.
    out = cfg.output_dir
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    rows = encode_all(tokenizer, read_chats(cfg.sft.data), cfg.sft.max_seq_len, cfg.sft.data)
    if len(rows) < cfg.sft.batch_size:
        raise ConfigError(f"{cfg.sft.data} has {len(rows)} rows, fewer than sft.batch_size={cfg.sft.batch_size}")
    steps = batch_order(len(rows), cfg.sft.batch_size, cfg.sft.epochs, cfg.run.seed)[:planned_steps(cfg)]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    start, resume_from, run_id = prepare_run_dir(out, cfg, resume)  # writes config.yaml (reloads with `rl sft`)
    log.info("sft: %d rows, %d steps of %d rows, %d trained tokens per epoch", len(rows), len(steps),
             cfg.sft.batch_size, sum(sum(m) for _, m in rows))

    # 2. The cluster and the learner ranks (the same actors as `rl train`).
    started_ray = init_ray(cfg)
    try:
        learners = create_learners(cfg, model_path)
        if resume_from is not None:
            ray.get([lrn.load.remote(str(resume_from)) for lrn in learners])
        logger = RunLogger(out, to_dict(cfg), mode=cfg.logging.wandb_mode, project=cfg.logging.wandb_project,
                           run_name=cfg.run.name, total_steps=len(steps), start_step=start,
                           progress_bar=cfg.logging.progress_bar, run_id=run_id, desc="sft",
                           shown=("loss", "loss/sft"))
        # 3. The step loop: one optimizer step per batch.
        for step in range(start, len(steps)):
            t0 = time.perf_counter()
            parts = collate([rows[i] for i in steps[step]], pad_id).split(len(learners))
            rank_metrics = ray.get([lrn.sft_train.remote(part) for lrn, part in zip(learners, parts)])
            metrics = merge_rank_metrics(rank_metrics)
            metrics["sft/epoch"] = step * cfg.sft.batch_size / len(rows)
            done = step + 1
            if done == len(steps) or (cfg.checkpoint.every and done % cfg.checkpoint.every == 0):
                save_checkpoint(out, done, learners, cfg, logger.run_id)
            metrics["time/step"] = time.perf_counter() - t0
            logger.log(done, metrics)
        logger.close()
    finally:
        if started_ray:
            ray.shutdown()
    return out


def merge_rank_metrics(rank_metrics: list[dict[str, float]]) -> dict[str, float]:
    """Per-rank metrics -> one dict: the loss weighted by each rank's tokens, token counts summed, the
    rest averaged."""
    tokens = [m["sft/tokens"] for m in rank_metrics]
    merged = {k: sum(m[k] for m in rank_metrics) / len(rank_metrics) for k in rank_metrics[0]}
    merged["loss/sft"] = sum(m["loss/sft"] * t for m, t in zip(rank_metrics, tokens)) / max(sum(tokens), 1.0)
    merged["sft/tokens"] = sum(tokens)
    return merged
