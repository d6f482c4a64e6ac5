"""Model-based reward WITHOUT a reference answer (Qwen3 report, section 4.4 (3)): a scalar reward model.

`RewardModelWorker` loads any HF folder as `AutoModelForSequenceClassification` with one label (e.g.
a Skywork/Qwen reward model, or one trained with TRL's RewardTrainer) and scores a (prompt, response)
conversation: the messages are rendered with the tokenizer's chat template when it has one, else as
"role: content" lines. Scores are the raw head output (unbounded); normalise them in the reward.

Serving is the same as the judge's (`rewards/judge.py`): a plain class that the driver wraps with Ray
and names, with batched `score_batch` and an async `score` that merges concurrent calls::

    ray.remote(RewardModelWorker).options(name="rl-reward-model", namespace=RAY_NAMESPACE,
                                          max_concurrency=256).remote("/models/rm")

(`rewards.serving.RAY_NAMESPACE`: any process, including the reward runner's, finds the actor there.)

The reward is `reward_model_reward` (built-in name "reward_model").
"""
from __future__ import annotations

import math
import random
import threading
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Sequence

import torch

from rewards.base import RewardResult, reward_spec
from rewards.serving import AsyncBatcher, cached_worker, load_tokenizer, named_actors
from rl.models import device_and_dtype

Messages = list[dict[str, str]]
Prompt = str | Messages
Normalize = Literal["none", "sigmoid", "affine"]

REWARD_MODEL_ACTOR = "rl-reward-model"
"""Name of the reward-model actor that `rl train` creates (the `reward_model` reward's default `model`)."""


def conversation(prompt: Prompt, response: str) -> Messages:
    """The prompt (a user string or chat messages) followed by `response` as the assistant turn."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
    elif isinstance(prompt, list) and all(isinstance(m, dict) and "role" in m for m in prompt):
        messages = list(prompt)
    else:
        raise TypeError(f"reward model prompt must be a string or chat messages, got {prompt!r:.120}")
    return messages + [{"role": "assistant", "content": response}]


class RewardModelWorker:
    """A scalar reward model. A plain class: in-process as is, or as a Ray actor via `ray.remote`.

    model: a local HF folder with a sequence-classification head (num_labels=1).
    micro_batch_size: conversations per forward pass; max_batch / max_wait_ms: async batching (as
    `JudgeOptions`); max_length: longer conversations are cut at the end (right truncation);
    device / dtype: None picks by capability (fp32 on CPU, see `rl.models.device_and_dtype`).
    """

    def __init__(self, model: str, *, micro_batch_size: int = 8, max_batch: int = 32, max_wait_ms: float = 20.0,
                 max_length: int = 4096, device: str | None = None, dtype: str | None = None):
        from transformers import AutoModelForSequenceClassification

        if not Path(model).is_dir():
            raise FileNotFoundError(f"reward model {model!r} is not a model folder")
        self.micro_batch_size, self.max_length = micro_batch_size, max_length
        self.device, self.dtype = device_and_dtype(dtype, device)
        self.tokenizer = load_tokenizer(model)
        # Right padding: causal attention keeps real tokens blind to pads; HF pools the last non-pad token.
        self.tokenizer.padding_side = "right"
        self.model = AutoModelForSequenceClassification.from_pretrained(model, num_labels=1, dtype=self.dtype)
        self.model = self.model.to(self.device).eval()
        # HF finds each row's last real token through config.pad_token_id; without it batches fail.
        self.model.config.pad_token_id = self.tokenizer.pad_token_id
        self._lock = threading.Lock()  # one forward pass at a time: callers share the model and the cores
        self._batcher = AsyncBatcher(self._score_conversations, max_batch, max_wait_ms)

    def render(self, messages: Messages) -> str:
        if self.tokenizer.chat_template is not None:
            return self.tokenizer.apply_chat_template(messages, tokenize=False)
        return "\n".join(f"{m['role']}: {m['content']}" for m in messages)

    def _score_conversations(self, conversations: Sequence[Messages]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(conversations), self.micro_batch_size):
            texts = [self.render(c) for c in conversations[start:start + self.micro_batch_size]]
            batch = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True,
                                   max_length=self.max_length, add_special_tokens=False).to(self.device)
            with self._lock, torch.inference_mode():
                scores += self.model(**batch).logits[:, 0].float().tolist()  # logits: (B, 1)
        return scores

    def score_batch(self, items: Sequence[tuple[Prompt, str]]) -> list[float]:
        """Raw scores for (prompt, response) pairs, micro-batched."""
        return self._score_conversations([conversation(p, r) for p, r in items])

    async def score(self, prompt: Prompt, response: str) -> float:
        """One raw score, batched with concurrent calls."""
        return await self._batcher.submit(conversation(prompt, response))


def normalize_score(raw: float, normalize: Normalize, scale: float, shift: float) -> float:
    """"none": raw; "affine": scale * raw + shift; "sigmoid": sigmoid(scale * raw + shift), in (0, 1)."""
    if normalize == "none":
        return raw
    z = scale * raw + shift
    if normalize == "affine":
        return z
    if normalize == "sigmoid":
        return 0.5 * (1.0 + math.tanh(z / 2))  # = 1 / (1 + e^-z), without overflow for large |z|
    raise ValueError(f"reward_model normalize={normalize!r}; use 'none', 'sigmoid' or 'affine'")


def model_endpoint(model: str, options: dict[str, Any]) -> Callable[[Prompt, str], Awaitable[float]]:
    """A local folder gets a cached in-process worker; any other name must be a named Ray actor."""
    if Path(model).is_dir():
        return cached_worker(RewardModelWorker, model, options).score
    actors = named_actors(model)
    if not actors:
        raise ValueError(f"reward model {model!r} is not an existing model folder and not a named Ray actor in "
                         "a reachable Ray cluster. Start a RewardModelWorker actor with that name (ray.remote("
                         "RewardModelWorker).options(name=..., namespace=RAY_NAMESPACE)), or pass a model folder.")
    if options:
        raise ValueError(f"rm_options configure a reward model this process creates, but {model!r} is a Ray "
                         "actor: set them where the actor is created.")
    return lambda prompt, response: random.choice(actors).score.remote(prompt, response)  # spread over replicas


@reward_spec()  # needs `prompt` OR `messages`, which a required-field tuple cannot say; checked below
async def reward_model_reward(completion: str, *, prompt: Prompt | None = None, messages: Messages | None = None,
                              model: str = REWARD_MODEL_ACTOR, normalize: Normalize = "none", scale: float = 1.0,
                              shift: float = 0.0, rm_options: dict[str, Any] | None = None,
                              **row: Any) -> RewardResult:
    """Score `completion` as the answer to `prompt` with a scalar reward model.

    prompt / messages: the question as a string or chat messages (`messages` wins when both are given).
    model: a named Ray actor (default "rl-reward-model", created by the driver in `RAY_NAMESPACE`) or a
      local model folder (an in-process RewardModelWorker, for the CLI and tests; `rm_options` are its
      keyword arguments).
    normalize: "none" (raw), "affine" (scale * raw + shift, e.g. scale=1/std, shift=-mean/std measured
      on your data) or "sigmoid" (sigmoid of that affine value, in (0, 1)). details carry the raw score.
    """
    question = messages if messages is not None else prompt
    if question is None:
        raise ValueError(f"reward 'reward_model' needs row field 'prompt' or 'messages'; "
                         f"the row has {sorted(row)}")
    if normalize not in ("none", "sigmoid", "affine"):
        raise ValueError(f"reward_model normalize={normalize!r}; use 'none', 'sigmoid' or 'affine'")
    raw = await model_endpoint(model, dict(rm_options or {}))(question, completion)
    return RewardResult(normalize_score(raw, normalize, scale, shift), {"raw": raw, "model": model})
