"""Model-based reward WITH a reference answer (Qwen3 report, section 4.4 (2)): a judge LLM.

A judge model reads {question, reference, response} in `JUDGE_TEMPLATE` and gives a verdict:
- mode "yes_no" (default): score = P(YES) / (P(YES) + P(NO)) from the next-token distribution right
  after the prompt, i.e. a softmax over the two verdict logits; one forward pass, no sampling.
- mode "grade": the judge writes a 0-10 grade (greedy, a few tokens); score = grade / 10.

Backends (rewards/judge_backends.py), picked from the `model` string given to `JudgeWorker` and its
`backend` option:
- a local Hugging Face model folder, `backend="transformers"` (default): padded forward passes of
  `micro_batch_size` (fp32 on CPU, bf16/fp16 on CUDA; `rl.models.device_and_dtype`). The prompt is
  rendered with the tokenizer's chat template when it has one (thinking off, so the verdict is the next
  token), else the plain message followed by "\\nAnswer:".
- a local folder, `backend="vllm"`: the same prompts in vLLM's offline engine, one per judge replica,
  `tensor_parallel_size` GPUs wide (the GPU configs' large judge); every batch is one `generate` call.
- an `http(s)://` URL: any OpenAI-compatible server (e.g. `vllm serve`) through the `openai` client
  (retries with exponential backoff). `api="completions"` (default) posts the plain prompt to
  `/v1/completions`, one request per micro-batch, reading `logprobs`; `api="chat"` posts to
  `/v1/chat/completions` (the server applies its chat template), one request per item. Requests run
  `max_concurrency` at a time, each bounded by `timeout_s`.

Serving: `JudgeWorker` is a plain class; the driver wraps it with Ray and names it so rewards find it::

    ray.remote(JudgeWorker).options(name="rl-judge", namespace=RAY_NAMESPACE, max_concurrency=256).remote(path)

Its `async def score` / `judge` queue requests and flush them as one batch when `max_batch` wait or
`max_wait_ms` after the first arrived, so many concurrent reward calls become one forward pass (Ray
runs a class with async methods as an async actor: all calls share one event loop).

The reward is `judge_reward` (built-in name "judge"), a thin async client; see its docstring.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Literal, Protocol, Sequence

from rewards.base import RewardResult, reward_spec
from rewards.serving import AsyncBatcher, cached_worker, named_actors

JudgeMode = Literal["yes_no", "grade"]

JUDGE_TEMPLATE = (
    "You are grading a response to a question against a reference answer. The response is correct "
    "when its final answer agrees with the reference answer; wording and format may differ.\n\n"
    "Question:\n{question}\n\n"
    "Reference answer:\n{reference}\n\n"
    "Response:\n{response}\n\n"
    "{instruction}"
)
"""The judge's user message; `instruction` is `INSTRUCTIONS[mode]`."""
INSTRUCTIONS: dict[str, str] = {
    "yes_no": "Is the response correct? Answer YES or NO.",
    "grade": "Grade the response from 0 (wrong) to 10 (fully correct). Reply with the grade only.",
}
PLAIN_SUFFIX = "\nAnswer:"
"""Appended when no chat template applies (plain tokenizers, `/v1/completions`): the verdict follows it."""


@dataclass
class JudgeItem:
    question: str
    reference: str
    response: str


@dataclass
class Verdict:
    """What the judge said about one response."""

    score: float
    """In [0, 1]: P(YES) (yes_no) or grade / 10 (grade); 0.0 when the judge's output was malformed."""
    verdict: str
    """"YES" / "NO" (yes_no), the grade "0".."10" (grade), or "malformed"."""
    text: str = ""
    """The judge's raw output (grade mode) or top tokens (HTTP yes_no), for debugging."""


@dataclass
class JudgeOptions:
    """How a `JudgeWorker` runs; `JudgeWorker(model, **options)` and `judge_options` fill it."""

    mode: JudgeMode = "yes_no"
    """"yes_no": P(YES) from the verdict logits; "grade": parse a generated 0-10 grade."""
    backend: Literal["transformers", "vllm"] = "transformers"
    """A local model's engine: transformers (padded micro-batches) or vllm (one engine, one `generate` per batch)."""
    micro_batch_size: int = 8
    """Items per forward pass (transformers) or per `/v1/completions` request (HTTP); vllm takes whole batches."""
    max_batch: int = 32
    """The async batcher flushes when this many `score` calls wait..."""
    max_wait_ms: float = 20.0
    """...or this long after the first one arrived."""
    max_response_chars: int = 8000
    """Longer responses are cut (head kept) so one rambling sample cannot blow up memory or the server."""
    device: str | None = None
    """transformers: "cpu", "cuda", "cuda:1"; None picks by capability."""
    dtype: str | None = None
    """Local models: "float32", "bfloat16", ...; None picks by capability (fp32 on CPU, bf16 on CUDA)."""
    tensor_parallel_size: int = 1
    """vllm: GPUs one engine spans (the actor's GPUs); on CPU, worker processes each bound to its share of cores."""
    gpu_memory_utilization: float = 0.85
    """vllm on GPU: fraction of each GPU for weights + KV cache."""
    kv_cache_gb: float = 1.0
    """vllm CPU build: KV-cache size in GiB."""
    max_model_len: int | None = None
    """vllm: longest prompt + verdict in tokens (None: the model's context length)."""
    enforce_eager: bool = True
    """vllm: skip CUDA-graph capture (faster start; set false for a large judge's throughput on GPU)."""
    max_new_tokens: int = 8
    """Grade mode: tokens the judge may write before its grade is parsed."""
    served_model: str | None = None
    """HTTP: the model name the server was started with; None asks `GET /v1/models` (one model served)."""
    api: Literal["completions", "chat"] = "completions"
    """HTTP: which OpenAI endpoint to use (see the module docstring)."""
    timeout_s: float = 120.0
    """HTTP: per-request timeout."""
    max_retries: int = 3
    """HTTP: retries of a request that failed to connect, timed out or got 408/409/429/5xx (backoff 0.5 s doubling)."""
    max_concurrency: int = 8
    """HTTP: requests in flight at once."""
    top_logprobs: int = 20
    """HTTP yes_no: how many top tokens to request (vLLM allows 20 by default; OpenAI at most 20/5)."""
    api_key: str | None = None
    """HTTP: bearer token; None reads $OPENAI_API_KEY (unset: "EMPTY", which a server without --api-key ignores)."""
    extra_body: dict[str, Any] = field(default_factory=dict)
    """HTTP: merged into every request; Qwen3 on vLLM: {"chat_template_kwargs": {"enable_thinking": False}}."""

    def __post_init__(self) -> None:
        if self.mode not in INSTRUCTIONS:
            raise ValueError(f"judge mode {self.mode!r} is not one of {sorted(INSTRUCTIONS)}")
        if self.api not in ("completions", "chat"):
            raise ValueError(f"judge api {self.api!r} must be 'completions' or 'chat'")
        if self.backend not in ("transformers", "vllm"):
            raise ValueError(f"judge backend {self.backend!r} must be 'transformers' or 'vllm'")
        for name in ("micro_batch_size", "max_batch", "max_response_chars", "max_new_tokens", "max_concurrency",
                     "tensor_parallel_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"judge option {name}={getattr(self, name)} must be >= 1")
        if self.tensor_parallel_size > 1 and self.backend != "vllm":
            raise ValueError(f"judge option tensor_parallel_size={self.tensor_parallel_size} needs backend='vllm' "
                             "(the transformers backend runs on one device)")
        if not 0 < self.gpu_memory_utilization <= 1 or self.kv_cache_gb <= 0 or self.max_retries < 0:
            raise ValueError("judge options: gpu_memory_utilization is a fraction in (0, 1], kv_cache_gb > 0, "
                             f"max_retries >= 0; got {self.gpu_memory_utilization}, {self.kv_cache_gb}, "
                             f"{self.max_retries}")


def judge_message(item: JudgeItem, mode: JudgeMode, max_response_chars: int) -> str:
    """The user message: `JUDGE_TEMPLATE` filled in (response cut to `max_response_chars`)."""
    response = item.response
    if len(response) > max_response_chars:
        response = response[:max_response_chars] + " [...truncated]"
    return JUDGE_TEMPLATE.format(question=item.question, reference=item.reference, response=response,
                                 instruction=INSTRUCTIONS[mode])


def yes_no_verdict(p_yes: float) -> Verdict:
    return Verdict(p_yes, "YES" if p_yes >= 0.5 else "NO")


_GRADE = re.compile(r"(?<![\d.])(\d{1,2})(?!\.?\d)")


def parse_grade(text: str) -> int | None:
    """The first whole number in `text` if it is a grade 0..10 ("8", "Grade: 8/10"); else None."""
    match = _GRADE.search(text)
    if match is None or int(match.group(1)) > 10:
        return None
    return int(match.group(1))


def grade_verdict(text: str) -> Verdict:
    grade = parse_grade(text)
    if grade is None:
        # Malformed MODEL output (no 0-10 grade): the only case that becomes score 0 rather than an error.
        return Verdict(0.0, "malformed", text)
    return Verdict(grade / 10, str(grade), text)


def verdict_from_top_logprobs(top: dict[str, float]) -> Verdict:
    """yes_no verdict from an OpenAI `top_logprobs` map {token: logprob}.

    Spellings (" YES", "Yes", "yes") are summed because a remote tokenizer's split is unknown here.
    """
    p_yes = sum(math.exp(lp) for token, lp in top.items() if token.strip().upper() == "YES")
    p_no = sum(math.exp(lp) for token, lp in top.items() if token.strip().upper() == "NO")
    if p_yes + p_no == 0.0:
        # Malformed MODEL output: neither verdict among the judge's top tokens, so it did not answer.
        return Verdict(0.0, "malformed", json.dumps(top)[:300])
    return Verdict(p_yes / (p_yes + p_no), "YES" if p_yes >= p_no else "NO", json.dumps(top)[:300])


class JudgeBackend(Protocol):
    """What `JudgeWorker` needs of an engine (rewards/judge_backends.py)."""

    def judge_batch(self, items: Sequence[JudgeItem]) -> list[Verdict]: ...


class JudgeWorker:
    """Serves a judge model. A plain class: in-process as is, or as a Ray actor via `ray.remote`.

    `model` is a local HF model folder (run by `backend`: transformers or vllm) or an `http(s)://` URL
    (OpenAI-compatible server); `options` are `JudgeOptions` fields. Use `score_batch` for lists,
    `await score(...)` / `await judge(...)` for single requests that should be batched with concurrent ones.
    """

    def __init__(self, model: str, **options: Any):
        # Imported here: the backends import this module's types, and the reward client never needs them.
        from rewards.judge_backends import HttpJudge, TransformersJudge, VLLMJudge

        self.options = JudgeOptions(**options)
        is_url = model.startswith(("http://", "https://"))
        if not is_url and not Path(model).is_dir():
            raise FileNotFoundError(f"judge model {model!r} is neither an http(s):// URL nor a model folder")
        if is_url and self.options.backend != "transformers":
            raise ValueError(f"judge backend {self.options.backend!r} runs a local model folder, but {model!r} is a "
                             "URL (its server is the engine); drop the backend option or pass a folder")
        local = {"transformers": TransformersJudge, "vllm": VLLMJudge}[self.options.backend]
        self.backend: JudgeBackend = HttpJudge(model, self.options) if is_url else local(model, self.options)
        self._batcher = AsyncBatcher(self.backend.judge_batch, self.options.max_batch, self.options.max_wait_ms)

    def judge_batch(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        return self.backend.judge_batch(items)

    def score_batch(self, items: Sequence[JudgeItem]) -> list[float]:
        """Scores in [0, 1], one per item, micro-batched."""
        return [v.score for v in self.backend.judge_batch(items)]

    async def judge(self, question: str, reference: str, response: str) -> Verdict:
        """One verdict, batched with concurrent calls (see `JudgeOptions.max_batch` / `max_wait_ms`)."""
        return await self._batcher.submit(JudgeItem(question, reference, response))

    async def score(self, question: str, reference: str, response: str) -> float:
        return (await self.judge(question, reference, response)).score


# ---- the reward function (a thin client) -------------------------------------------------------

JUDGE_ACTOR = "rl-judge"
"""Name of the judge actor that `rl train` creates (the `judge` reward's default `judge`)."""


def question_text(prompt: Any) -> str:
    """The question from a `prompt` column: a string, or chat messages (the last user message)."""
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return users[-1]
    raise TypeError(f"cannot read a question from prompt {prompt!r:.120}; pass a string or chat messages")


def judge_endpoint(judge: str, judge_model: str | None,
                   options: dict[str, Any]) -> Callable[[str, str, str], Awaitable[Verdict]]:
    """`judge` as a callable (question, reference, response) -> awaitable Verdict.

    A URL or an existing folder gets a cached in-process `JudgeWorker`; any other name must be a named
    Ray actor (created by the driver with that name, in `RAY_NAMESPACE`; replicas `judge-1`, ... share
    the calls; see `named_actors`).
    """
    if judge.startswith(("http://", "https://")) or Path(judge).is_dir():
        served = {"served_model": judge_model} if judge_model else {}
        return cached_worker(JudgeWorker, judge, options | served).judge
    actors = named_actors(judge)
    if not actors:
        raise ValueError(f"judge {judge!r} is not an http(s):// URL, not an existing model folder, and not a "
                         "named Ray actor in a reachable Ray cluster. Start a JudgeWorker actor with that name (ray.remote("
                         "JudgeWorker).options(name=..., namespace=RAY_NAMESPACE)), or pass a URL or a model folder.")
    if options or judge_model:
        raise ValueError(f"judge_options/judge_model configure a judge this process creates, but {judge!r} is a "
                         "Ray actor: set them where the actor is created.")
    # Each call picks a replica at random: callers are many independent processes, so this spreads
    # the load evenly without any shared state.
    return lambda question, reference, response: random.choice(actors).judge.remote(question, reference, response)


@reward_spec(required=("answer|reference",))
async def judge_reward(completion: str, *, question: str | None = None, prompt: Any = None,
                       reference: Any = None, answer: Any = None, judge: str = JUDGE_ACTOR,
                       judge_model: str | None = None, judge_options: dict[str, Any] | None = None,
                       **row: Any) -> RewardResult:
    """Judge `completion` against the reference answer; score in [0, 1].

    question: the `question` column, else the `prompt` column (string or chat messages).
    reference: the `reference` column, else `answer` (the declared column; `reference` is an alias).
    judge: a named Ray actor (default "rl-judge", created by the driver in `RAY_NAMESPACE`), an
      `http(s)://` URL of an OpenAI-compatible server (`judge_model` names the served model, else the
      server's only one), or a local model folder (an in-process JudgeWorker, for the CLI and tests).
    judge_options: `JudgeOptions` fields for a judge created here (URL or folder), e.g. {"mode": "grade"}.
    """
    question = question if question is not None else (question_text(prompt) if prompt is not None else None)
    reference = reference if reference is not None else answer
    if question is None or reference is None:
        raise ValueError(f"reward 'judge' needs a question (row field 'question' or 'prompt') and a reference "
                         f"(row field 'answer' or 'reference'); the row has {sorted(row)}")
    call = judge_endpoint(judge, judge_model, dict(judge_options or {}))
    verdict: Verdict = await call(question, str(reference), completion)
    details = {"verdict": verdict.verdict, "judge": judge} | ({"text": verdict.text} if verdict.text else {})
    return RewardResult(verdict.score, details)
