"""Fusion SFT (Qwen3 Technical Report, section 4.3): cross-entropy on mixed thinking / non-thinking chats,
trained by the same DeepSpeed Learner actors as GRPO.

    rl sft configs/sft_tiny.yaml [--output-dir runs/sft] [--sft.epochs 3 ...]

Data: a JSONL file, one conversation per line: `{"messages": [{"role": "user", "content": "... /no_think"},
{"role": "assistant", "content": "<think>\\n\\n</think>\\n\\n42"}]}` (any number of earlier turns, an
optional system message). `rl build-fusion-data` writes such files (rl/thinking/fusion_data.py), and
`configs/data/fusion_arithmetic.jsonl` ships a procedural one (`rl.thinking.fusion_data.arithmetic_fusion_rows`).

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
from rl.config_io import save_config, to_dict
from rl.thinking.tags import complies, parse_thinking, wants_thinking
from rl.thinking.chat import render_chat
from rl.types import SFTBatch

log = logging.getLogger("rl")

# ------------------------------------------------------------------------------------------------ data
def read_chats(path: str | Path) -> list[list[dict[str, Any]]]:
    """The `messages` of every line of a JSONL file; a malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sft.data: {path} does not exist; write one with `rl build-fusion-data` or point "
                          "sft.data at a JSONL file of {\"messages\": [...]} rows")
    chats = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        messages = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
            raise ConfigError(f"{path}:{n}: each row needs `messages`, a list of chat messages ending with the "
                              "assistant turn to train on")
        chats.append(messages)
    if not chats:
        raise ConfigError(f"{path} holds no rows")
    return chats


def encode_chat(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[list[int], list[int]]:
    """(input_ids, loss_mask) of one chat: loss 1 on the final assistant turn, through its end token.

    Prompt and response are tokenised separately, exactly as a rollout sees them (prompt ids, then
    generated ids), so the model learns the token boundary it will generate from.
    """
    prompt = render_chat(tokenizer, messages[:-1], thinking=True)
    full = render_chat(tokenizer, messages, thinking=True, add_generation_prompt=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the history differently with and without the final turn, "
                         "so the response cannot be cut off the prompt")
    response = full[len(prompt):].rstrip("\n")  # ends with the end-of-turn token, which is trained
    asked = wants_thinking(messages[:-1])
    if not complies(parse_thinking(response), asked):
        raise ValueError(f"the final response does not follow the mode the dialog asks for "
                         f"({'thinking' if asked else 'non-thinking'}; last flag wins, no flag = thinking): "
                         f"{response[:120]!r}")
    prompt_ids = tokenizer.encode(prompt, add_special_tokens=False)
    response_ids = tokenizer.encode(response, add_special_tokens=False)
    return prompt_ids + response_ids, [0] * len(prompt_ids) + [1] * len(response_ids)


def encode_all(tokenizer: Any, chats: list[list[dict[str, Any]]], max_len: int, where: str
               ) -> list[tuple[list[int], list[int]]]:
    encoded = []
    for i, messages in enumerate(chats):
        try:
            ids, mask = encode_chat(tokenizer, messages)
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


# ------------------------------------------------------------------------------------------- the loop
def sft(cfg: SFTConfig) -> Path:
    """Run fusion SFT as configured; returns the run folder."""
    import ray
    from transformers import AutoTokenizer

    from rl.actors import create_learners, init_ray, save_checkpoint
    from rl.metrics import RunLogger
    from rl.models import resolve_model_path

    # 1. Everything that can be checked before any actor starts.
    out = cfg.output_dir
    if (out / "metrics.jsonl").exists():
        raise ConfigError(f"run folder {out} already holds a run; choose another --output-dir")
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    rows = encode_all(tokenizer, read_chats(cfg.sft.data), cfg.sft.max_seq_len, cfg.sft.data)
    if len(rows) < cfg.sft.batch_size:
        raise ConfigError(f"{cfg.sft.data} has {len(rows)} rows, fewer than sft.batch_size={cfg.sft.batch_size}")
    steps = batch_order(len(rows), cfg.sft.batch_size, cfg.sft.epochs, cfg.run.seed)
    steps = steps[:cfg.sft.max_steps] if cfg.sft.max_steps else steps
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")  # reloads with `rl sft`
    log.info("sft: %d rows, %d steps of %d rows, %d trained tokens per epoch", len(rows), len(steps),
             cfg.sft.batch_size, sum(sum(m) for _, m in rows))

    # 2. The cluster and the learner ranks (the same actors as `rl train`).
    started_ray = init_ray(cfg)
    try:
        learners = create_learners(cfg, model_path)
        logger = RunLogger(out, to_dict(cfg), mode=cfg.logging.wandb_mode, project=cfg.logging.wandb_project,
                           run_name=cfg.run.name, total_steps=len(steps), start_step=0,
                           progress_bar=cfg.logging.progress_bar)
        # 3. The step loop: one optimizer step per batch.
        for step, idx in enumerate(steps):
            t0 = time.perf_counter()
            parts = collate([rows[i] for i in idx], pad_id).split(len(learners))
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
