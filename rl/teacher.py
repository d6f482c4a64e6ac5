"""The teacher of on-policy distillation (Qwen3 report, section 4.5: strong-to-weak distillation): a Ray
actor holding a larger (or better trained) model that scores the student's own samples token by token.

    rl distill configs/distill_tiny.yaml        # = rl train with a `distill.teacher`

The driver sends each step's batch (prompt + sampled response ids); the teacher returns, for every
position, the log-probability it gives the token there (0 where nothing is trained). With the
student's sampling log-probs, that is the per-token reverse KL estimate log p_s(x_t) - log p_t(x_t)
on the student's own samples (rl/grpo.py `distill_advantages`), the signal on-policy distillation
trains on. Only the sampled tokens' log-probs travel, (B, T) floats, never the teacher's vocabulary
distribution (the top-k exchange full-distribution distillation needs): the sampled-token estimator
of the reverse KL needs nothing else. The teacher must share the student's vocabulary (rl/actors.py
checks it before the actor starts).

The forward runs in passes of `micro_batch_size` rows, each projected onto the vocabulary
`chunk_tokens` positions at a time (rl/learner_logprobs.py), so no (B, T, V) tensor is built.
"""
from __future__ import annotations

import inspect

import torch

from rl.learner_logprobs import LogprobSettings, window_logprobs
from rl.models import device_and_dtype
from rl.types import TrainBatch


class Teacher:
    """A frozen causal LM that returns per-token log-probs of given sequences (an actor: rl/actors.py)."""

    def __init__(self, model_path: str, dtype: str = "auto", threads: int = 0, micro_batch_size: int = 8,
                 chunk_tokens: int = 512):
        from transformers import AutoModelForCausalLM

        if threads:
            torch.set_num_threads(threads)
        device, torch_dtype = device_and_dtype(dtype)
        self.model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch_dtype).to(device).eval()
        self.micro_batch_size = micro_batch_size
        self.settings = LogprobSettings(temperature=1.0, chunk_tokens=chunk_tokens, shared_prefix=False,
                                        keeps_logits="logits_to_keep" in inspect.signature(self.model.forward).parameters)

    @torch.no_grad()
    def logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """(B, T) float32: at position t the teacher's log-prob of input_ids[:, t] given the tokens before
        it, on the trained (loss_mask) positions; 0 elsewhere. Aligned like batch.behavior_logprobs."""
        rows, width = batch.input_ids.shape
        out = torch.zeros(rows, width + 1)  # one column past the end: where `index` puts padding
        for idx in torch.arange(rows).split(self.micro_batch_size):
            used = int(batch.attention_mask[idx].sum(dim=1).max())
            lp, _, index = window_logprobs(self.model, batch.input_ids[idx, :used], batch.attention_mask[idx, :used],
                                           batch.loss_mask[idx, :used], self.settings)
            # index is a column of input_ids[:, 1:], so the token's own position is index + 1
            index = torch.where(index >= used - 1, width, index + 1)
            out[idx] = out[idx].scatter(1, index, lp.float().cpu())
        return out[:, :width] * batch.loss_mask.float()

    def ready(self) -> bool:
        return True
