"""The learner's token log-probs and entropies, without a full (B, T, V) fp32 logits tensor.

The model runs to its final hidden states (B, W, H) (HF `output_hidden_states`, with `logits_to_keep`
selecting no position, so the model projects nothing itself); then `project` applies the output layer
to about `chunk_tokens` positions at a time, computes each position's label log-prob and entropy in
fp32 and drops the chunk's logits. Under autograd every chunk runs in `torch.utils.checkpoint`, so its
(chunk, V) logits are recomputed in backward instead of kept: the vocabulary part of a pass's memory
is that of one chunk whatever the sequence length (TRL's chunked NLL, SkyRL's chunked logprobs do
the same). Values and gradients are those of projecting everything at once (tests/rl/test_chunked_logits.py).

Only the columns holding trained labels are projected (the loss window, or the responses with a
shared prompt, `learner.shared_prefix`): a fifth of a small model's FLOPs, as TRL's `logits_to_keep`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch.utils.checkpoint import checkpoint

from rl import grpo
from rl.models import device_and_dtype
from rl.types import TrainBatch

Entropy = Literal["none", "value", "grad"]
"""What `project` returns as entropy: nothing, its value (no gradient), or its value with gradient."""


@dataclass(frozen=True)
class LogprobSettings:
    """How the learner turns a batch into log-probs; decided once per learner (rl/learner.py `setup`)."""

    temperature: float
    """Logits are divided by the rollout's sampling temperature (the distribution that was sampled)."""
    chunk_tokens: int
    """Positions projected onto the vocabulary at a time (`learner.logits_chunk_tokens`); 0: all at once."""
    keeps_logits: bool
    """The model class takes `logits_to_keep` (else it projects every position, which is discarded)."""
    shared_prefix: bool
    """Each distinct prompt of a pass runs once, its responses on its KV cache (`learner.shared_prefix`)."""


def token_logprobs(model: Any, mb: TrainBatch, s: LogprobSettings, entropy: Entropy = "none"
                   ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Logprobs (B, W) of the labels that can be trained, their entropies (B, W) (None for "none"),
    and `index` (B, W): the column of input_ids[:, 1:] (and of every (B, T-1) tensor aligned with it)
    each entry belongs to; T-1, one past the end, marks padding (`at` reads 0 there)."""
    if s.shared_prefix:
        return _shared_prefix_logprobs(model, mb, s, entropy)
    return window_logprobs(model, mb.input_ids, mb.attention_mask, mb.loss_mask, s, entropy)


def window_logprobs(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, loss_mask: torch.Tensor,
                    s: LogprobSettings, entropy: Entropy = "none"
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """`token_logprobs` of whole rows: one forward, then the loss window's columns projected."""
    dev = device_and_dtype()[0]
    cols = loss_window(loss_mask)
    hidden, _ = _final_hidden(model, s, input_ids=input_ids.to(dev), attention_mask=attention_mask.to(dev))
    labels = input_ids[:, cols.start + 1:cols.stop + 1].to(dev)
    logprobs, ent = project(_head(model), hidden[:, cols], labels, s.temperature, s.chunk_tokens, entropy)
    index = torch.arange(cols.start, cols.stop).expand(len(labels), -1)
    return logprobs, ent, index


def _shared_prefix_logprobs(model: Any, mb: TrainBatch, s: LogprobSettings, entropy: Entropy
                            ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """`token_logprobs` with each distinct prompt of the pass run once (GRPO's group_size samples share
    one): prompts left-padded in one forward that keeps its KV cache, the cache repeated for each
    row, then the responses on it with their true positions. The same math as running each row
    whole; gradients reach the prompt through the cache. Labels are response tokens, so `index`
    of response token j of a row with prompt length p is p - 1 + j."""
    dev = device_and_dtype()[0]
    lengths = mb.attention_mask.sum(dim=1)
    prompts: dict[tuple[int, ...], int] = {}
    group = torch.tensor([prompts.setdefault(tuple(ids[:p].tolist()), len(prompts))
                          for ids, p in zip(mb.input_ids, mb.prompt_lengths.tolist())])
    p_max = max(len(k) for k in prompts)
    prompt_ids = torch.zeros(len(prompts), p_max, dtype=torch.long)
    prompt_mask = torch.zeros_like(prompt_ids)
    for ids, g in prompts.items():
        prompt_ids[g, p_max - len(ids):], prompt_mask[g, p_max - len(ids):] = torch.tensor(ids), 1
    hidden_prompt, cache = _final_hidden(model, s, input_ids=prompt_ids.to(dev), attention_mask=prompt_mask.to(dev),
                                         position_ids=(prompt_mask.cumsum(1) - 1).clamp(min=0).to(dev), use_cache=True)
    cache.reorder_cache(group.to(dev))  # one copy of its prompt's keys and values per row

    resp_len = lengths - mb.prompt_lengths
    width = max(int(resp_len.max()), 1)
    responses = torch.zeros(len(group), width, dtype=torch.long)
    resp_mask = torch.zeros_like(responses)
    for i, (p, n) in enumerate(zip(mb.prompt_lengths.tolist(), resp_len.tolist())):
        responses[i, :n], resp_mask[i, :n] = mb.input_ids[i, p:p + n], 1
    positions = mb.prompt_lengths[:, None] + torch.arange(width)
    hidden_tail, _ = _final_hidden(model, s, input_ids=responses.to(dev), position_ids=positions.to(dev),
                                   attention_mask=torch.cat([prompt_mask[group], resp_mask], 1).to(dev),
                                   past_key_values=cache, use_cache=True)
    # the prompt's last position predicts response token 0; response position j predicts j + 1
    hidden = torch.cat([hidden_prompt[:, -1:][group.to(dev)], hidden_tail[:, :-1]], dim=1)  # (B, width, H)
    logprobs, ent = project(_head(model), hidden, responses.to(dev), s.temperature, s.chunk_tokens, entropy)
    index = mb.prompt_lengths[:, None] - 1 + torch.arange(width)
    index = torch.where(resp_mask.bool(), index, mb.input_ids.shape[1] - 1)
    return logprobs, ent, index


def _final_hidden(model: Any, s: LogprobSettings, **inputs: Any) -> tuple[torch.Tensor, Any]:
    """The model's final hidden states (B, T, H) (after its last norm: what the output layer reads) and
    its KV cache (None without use_cache). `logits_to_keep` selecting no position keeps the model from
    projecting anything itself."""
    keep = {"logits_to_keep": torch.empty(0, dtype=torch.long, device=inputs["input_ids"].device)} if s.keeps_logits else {}
    out = model(**inputs, output_hidden_states=True, **keep)
    return out.hidden_states[-1], out.past_key_values


def project(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, temperature: float,
            chunk_tokens: int, entropy: Entropy = "none") -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, W) of `labels` (B, W) and entropies (B, W) (None for "none") of
    softmax(head(hidden) / temperature), hidden (B, W, H), in fp32, `chunk_tokens` positions at a
    time (0: all at once). With autograd on and more than one chunk, each chunk is checkpointed: its
    logits live only while that chunk is computed, in forward and again in backward."""
    rows, width, size = hidden.shape
    flat_hidden, flat_labels = hidden.reshape(-1, size), labels.reshape(-1)
    chunk = chunk_tokens or max(len(flat_labels), 1)
    recompute = torch.is_grad_enabled() and len(flat_labels) > chunk
    parts = [checkpoint(_chunk, head, h, y, temperature, entropy, use_reentrant=False) if recompute
             else _chunk(head, h, y, temperature, entropy)
             for h, y in zip(flat_hidden.split(chunk), flat_labels.split(chunk))]
    logprobs = torch.cat([lp for lp, _ in parts]).view(rows, width) if parts else hidden.new_zeros(rows, width)
    if entropy == "none":
        return logprobs, None
    ent = torch.cat([e for _, e in parts]).view(rows, width) if parts else hidden.new_zeros(rows, width)
    return logprobs, ent


def _chunk(head: torch.nn.Module, hidden: torch.Tensor, labels: torch.Tensor, temperature: float,
           entropy: Entropy) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (n,) and entropies (n,) of one chunk of n positions; the (n, V) logits die here."""
    logits = (head(hidden).float() / temperature).unsqueeze(0)  # (1, n, V)
    logprobs = grpo.logprobs_from_logits(logits, labels.unsqueeze(0))[0]
    if entropy == "none":
        return logprobs, None
    with torch.set_grad_enabled(entropy == "grad" and torch.is_grad_enabled()):
        return logprobs, grpo.entropy_from_logits(logits)[0]


def _head(model: Any) -> torch.nn.Module:
    """The output layer (lm_head, LoRA-wrapped if adapted) of an HF model, a peft model or a DeepSpeed
    engine around either (both pass unknown attributes through to the model they wrap)."""
    return model.get_output_embeddings()


def at(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values (B, T-1) at `index` (B, W) from `token_logprobs`; index T-1 (padding) reads 0."""
    padded = torch.cat([values, values.new_zeros(len(values), 1)], dim=1)
    return padded.gather(1, index)


def loss_window(loss_mask: torch.Tensor) -> slice:
    """Columns of loss_mask[:, 1:] from the first to the last trained label of any row (at least one)."""
    cols = loss_mask[:, 1:].any(dim=0).nonzero().flatten()
    if len(cols) == 0:
        return slice(0, 1)
    return slice(int(cols[0]), int(cols[-1]) + 1)
