"""Everything that crosses actors: small, typed dataclasses (pickled through Ray's object store).

One GRPO step moves data like this:

    driver --RolloutRequest--> RolloutWorker --Rollout--> driver --ScoreRequest--> RewardWorker
    driver --TrainBatch (tensors)--> Learner ranks --metrics dict--> driver
    Learner rank 0 --weight buckets (object refs, never copied to the driver)--> RolloutWorkers
                     (rl/weight_sync.py)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class RolloutRequest:
    """One sequence to generate (a prompt appears `group_size` times, once per sample)."""

    uid: str
    """`<step>-<prompt index>`: samples with the same uid form one GRPO group."""
    task: str
    """Task category name."""
    prompt_ids: list[int]
    """Rendered prompt tokens (chat template applied by the driver, never re-tokenised later)."""
    max_new_tokens: int
    """Response token budget (thinking + answer, and all turns of an agent episode)."""
    thinking: bool
    """Mode the prompt asks for (True: /think)."""
    thinking_budget: int | None = None
    """Stop thinking after this many tokens and insert STOP_THINKING (None: no budget)."""
    seed: int = 0
    """Sampling seed for this sequence (reproducible rollouts)."""
    env: str | None = None
    """Agent env (built-in name or import string) that runs this episode; None: single-turn generation."""
    row: dict[str, Any] | None = None
    """The dataset row the env resets from (agent requests only)."""
    soft_switch: bool = False
    """thinking.switch=soft: an agent episode's later generation prompts are rendered like its first,
    without a pre-filled think block (the dialog's flag asks for the mode)."""


@dataclass
class Rollout:
    """A generated response with the per-token data the learner needs."""

    request: RolloutRequest
    response_ids: list[int]
    """All tokens after the prompt: model tokens, inserted stop-thinking text, env/tool tokens."""
    loss_mask: list[int]
    """1 for tokens the model sampled (trained on), 0 for inserted or env tokens. Same length."""
    logprobs: list[float]
    """Behaviour logprobs from the engine for each response token (0.0 where loss_mask is 0)."""
    text: str
    """Decoded response (what rewards see); for an agent episode its last assistant turn."""
    finish_reason: str
    """"stop" (EOS / stop string; an agent episode the env finished), "length" (truncated: token budget)
    or "env" (an agent episode cut by max_turns, or by an env error or timeout)."""
    budget_hit: bool = False
    """The thinking budget was reached and STOP_THINKING was inserted."""
    env_info: dict[str, Any] = field(default_factory=dict)
    """Agent envs: turns, tool calls, env reward, success, errors, timings (keys: rl/rollout/agent_loop.py)."""
    weights_version: int = 0
    """Learner step whose weights generated this rollout (staleness for off-policy runs)."""
    thinking_tokens: int = 0
    """Tokens the model spent in its think block (up to and including `</think>`; the phase-1 tokens
    when the budget cut the thought; all tokens of a thought never closed; 0 without a block)."""

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"


@dataclass
class TrainBatch:
    """Padded tensors for one learner rank. Shapes: (B, T) with T = prompt + response, right-padded."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    """1 on response tokens that are trained (model-sampled), 0 on prompt, padding, env tokens."""
    advantages: torch.Tensor
    """(B,) per-sequence GRPO advantage, or (B, T) per token aligned with input_ids (distillation)."""
    behavior_logprobs: torch.Tensor
    """(B, T) engine logprobs aligned with input_ids positions (used for off-policy correction)."""
    prompt_lengths: torch.Tensor
    """(B,) prompt tokens at the start of each row; rows of a GRPO group share them (the learner runs
    a shared prompt once per pass, `learner.shared_prefix`)."""
    truncated: torch.Tensor | None = None
    """(B,) 1 where the response was cut at max_new_tokens (`grpo.mask_truncated` drops those rows);
    None: none was."""

    def __post_init__(self) -> None:
        if self.truncated is None:
            self.truncated = torch.zeros(len(self.input_ids), dtype=torch.long)

    def split(self, parts: int) -> list["TrainBatch"]:
        size = len(self.input_ids) // parts
        return [TrainBatch(*(t[i * size:(i + 1) * size] for t in self.tensors())) for i in range(parts)]

    def tensors(self) -> tuple[torch.Tensor, ...]:
        return (self.input_ids, self.attention_mask, self.loss_mask, self.advantages, self.behavior_logprobs,
                self.prompt_lengths, self.truncated)


@dataclass
class SFTBatch:
    """Padded chat tensors for one learner rank in `rl sft`. Shapes: (B, T), right-padded."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    loss_mask: torch.Tensor
    """1 on the tokens of the final assistant turn (what cross-entropy trains), 0 elsewhere."""

    def split(self, parts: int) -> list["SFTBatch"]:
        size = len(self.input_ids) // parts
        return [self.select(torch.arange(i * size, (i + 1) * size)) for i in range(parts)]

    def select(self, idx: torch.Tensor) -> "SFTBatch":
        return SFTBatch(self.input_ids[idx], self.attention_mask[idx], self.loss_mask[idx])
