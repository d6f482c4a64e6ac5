"""The judge's engines (rewards/judge.py picks one per `JudgeWorker`):

- `TransformersJudge`: a local HF model, one padded forward pass (or `generate`) per micro-batch;
- `VLLMJudge`: a local model in vLLM's offline engine (one per judge replica, tensor parallel), every
  batch one `generate` call that vLLM schedules itself;
- `HttpJudge`: an OpenAI-compatible server (`vllm serve`) through the `openai` client.

All three give the same verdicts for the same model: yes_no = softmax over the YES and NO logits of the
first answer token, grade = the greedily generated text, parsed.
"""
from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import torch

from rewards.judge import (PLAIN_SUFFIX, JudgeItem, JudgeOptions, Verdict, grade_verdict, judge_message,
                           verdict_from_top_logprobs, yes_no_verdict)
from rewards.serving import load_tokenizer
from rl.models import device_and_dtype
from rl.vllm_setup import start_llm


class LocalJudge:
    """What the local backends share: the tokenizer, the rendered prompt and the YES / NO verdict tokens.

    The prompt is the tokenizer's chat template when it has one (thinking off, so the verdict is the
    next token), else the plain message followed by "\\nAnswer:".
    """

    def __init__(self, path: str, options: JudgeOptions):
        self.options = options
        self.tokenizer = load_tokenizer(path)
        self.chat = self.tokenizer.chat_template is not None
        lead = "" if self.chat else " "  # plain prompts end with "Answer:", so the verdict is " YES"
        self.yes_id = self.tokenizer.encode(lead + "YES", add_special_tokens=False)[0]
        self.no_id = self.tokenizer.encode(lead + "NO", add_special_tokens=False)[0]
        if self.yes_id == self.no_id:
            raise ValueError(f"judge tokenizer at {path} maps YES and NO to the same first token; "
                             "use mode='grade'")
        self._lock = threading.Lock()  # one batch at a time: callers share the model and the devices

    def render(self, item: JudgeItem) -> str:
        message = judge_message(item, self.options.mode, self.options.max_response_chars)
        if not self.chat:
            return message + PLAIN_SUFFIX
        # enable_thinking=False: Qwen3 templates then open the answer (empty think block), so the verdict
        # is the very next token; templates without that variable ignore it.
        return self.tokenizer.apply_chat_template([{"role": "user", "content": message}], tokenize=False,
                                                  add_generation_prompt=True, enable_thinking=False)


class TransformersJudge(LocalJudge):
    """Judge backend: a local HF causal LM (fp32 on CPU, bf16/fp16 on CUDA; `rl.models.device_and_dtype`)."""

    def __init__(self, path: str, options: JudgeOptions):
        from transformers import AutoModelForCausalLM

        super().__init__(path, options)
        self.device, self.dtype = device_and_dtype(options.dtype, options.device)
        # Left padding puts every row's next-token position last, so `logits_to_keep=1` suffices:
        # full (B, T, V) logits of a 150k vocabulary would cost GBs.
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype).to(self.device).eval()

    def judge_batch(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        size = self.options.micro_batch_size
        run = self._yes_no if self.options.mode == "yes_no" else self._grade
        return [v for start in range(0, len(items), size) for v in run(list(items[start:start + size]))]

    def _encode(self, items: list[JudgeItem]) -> dict[str, torch.Tensor]:
        batch = self.tokenizer([self.render(i) for i in items], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.device)
        return dict(batch)

    def _yes_no(self, items: list[JudgeItem]) -> list[Verdict]:
        batch = self._encode(items)
        # Positions count real tokens only, so a left-padded row sees the positions of its unpadded run.
        position_ids = (batch["attention_mask"].cumsum(-1) - 1).clamp(min=0)
        with self._lock, torch.inference_mode():
            logits = self.model(**batch, position_ids=position_ids, logits_to_keep=1).logits[:, -1]  # (B, V)
        pair = logits[:, [self.yes_id, self.no_id]].float()  # (B, 2)
        return [yes_no_verdict(p) for p in torch.softmax(pair, dim=-1)[:, 0].tolist()]

    def _grade(self, items: list[JudgeItem]) -> list[Verdict]:
        batch = self._encode(items)
        with self._lock, torch.inference_mode():
            out = self.model.generate(**batch, max_new_tokens=self.options.max_new_tokens, do_sample=False,
                                      pad_token_id=self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [grade_verdict(t) for t in texts]


class VLLMJudge(LocalJudge):
    """Judge backend: vLLM's offline `LLM` in this process (the judge actor), `tensor_parallel_size` wide.

    TP > 1 runs vLLM's multiprocess executor (a worker process per GPU; on CPU per core group, each bound
    to its cores; `rl.vllm_setup.start_llm`). The dtype is
    the transformers backend's (fp32 on CPU, bf16 on CUDA) unless `dtype` says otherwise.
    """

    def __init__(self, path: str, options: JudgeOptions):
        super().__init__(path, options)
        dtype = device_and_dtype(options.dtype, options.device)[1]  # the transformers backend's choice
        self.llm = start_llm(path, tensor_parallel_size=options.tensor_parallel_size, kv_cache_gb=options.kv_cache_gb,
                             gpu_memory_utilization=options.gpu_memory_utilization,
                             dtype=str(dtype).removeprefix("torch."), seed=0, enforce_eager=options.enforce_eager,
                             max_model_len=options.max_model_len)
        from vllm import SamplingParams

        self.sampling = SamplingParams
        self.threads = torch.get_num_threads()  # what the engine was built (and its CPU kernels planned) with

    def judge_batch(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        """The whole batch in one `generate` call: vLLM batches continuously, micro-batches would only
        leave it idle between them."""
        if not items:
            return []
        # The batcher calls from a worker thread, whose OpenMP thread count is its own: the CPU build's
        # attention kernel aborts the process when it differs from the count its metadata was planned with.
        torch.set_num_threads(self.threads)
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=self.tokenizer.encode(self.render(i), add_special_tokens=False))
                   for i in items]
        if self.options.mode == "yes_no":
            # Log-probs of exactly the two verdict tokens (log-softmax over the vocabulary, before any
            # sampling transform); normalised over the two they are softmax(logit_YES, logit_NO).
            params = self.sampling(max_tokens=1, temperature=0.0, logprob_token_ids=[self.yes_id, self.no_id])
        else:
            params = self.sampling(max_tokens=self.options.max_new_tokens, temperature=0.0)
        with self._lock:
            results = self.llm.generate(prompts, params, use_tqdm=False)
        if self.options.mode == "grade":
            return [grade_verdict(self.tokenizer.decode(r.outputs[0].token_ids, skip_special_tokens=True))
                    for r in results]
        verdicts = []
        for result in results:
            first = result.outputs[0].logprobs[0]  # {token id: Logprob} of the first generated token
            yes, no = first[self.yes_id].logprob, first[self.no_id].logprob
            verdicts.append(yes_no_verdict(1.0 / (1.0 + math.exp(no - yes))))
        return verdicts


class HttpJudge:
    """Judge backend: an OpenAI-compatible server (vLLM) through the `openai` client.

    The client retries a failed request (connection error, timeout, HTTP 408/409/429/5xx) `max_retries`
    times with exponential backoff (0.5 s doubling to at most 8 s, jittered; a server's Retry-After
    header wins); `max_concurrency` requests are in flight at once (this pool's threads).
    """

    def __init__(self, url: str, options: JudgeOptions):
        import openai

        self.options = options
        self.base = url.rstrip("/").removesuffix("/v1")
        # vLLM checks the key only when started with --api-key; the client insists on one.
        api_key = options.api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.client = openai.OpenAI(base_url=self.base + "/v1", api_key=api_key, timeout=options.timeout_s,
                                    max_retries=options.max_retries)
        self._pool = ThreadPoolExecutor(options.max_concurrency, thread_name_prefix="judge-http")
        self.model = options.served_model or self._only_served_model()

    def _call(self, endpoint: str, create: Callable[..., Any], **body: Any) -> Any:
        """`create(**body)`, its failure (after the client's retries) named with what to check."""
        import openai

        where = f"judge server {self.base}/v1/{endpoint}"
        try:
            return create(**body)
        except openai.APIStatusError as exc:
            raise RuntimeError(f"{where} answered HTTP {exc.status_code}: {exc.message}") from exc
        except openai.APIConnectionError as exc:  # also timeouts (APITimeoutError)
            raise RuntimeError(f"{where} failed or exceeded timeout_s={self.options.timeout_s} "
                               f"({self.options.max_retries} retries): {exc}; is the server up at that "
                               "address?") from exc

    def _only_served_model(self) -> str:
        names = [m.id for m in self._call("models", self.client.models.list)]
        if len(names) != 1:
            raise ValueError(f"judge server {self.base} serves {names}; pick one with judge_model=NAME")
        return names[0]

    def judge_batch(self, items: Sequence[JudgeItem]) -> list[Verdict]:
        if self.options.api == "chat":
            return list(self._pool.map(self._chat_one, items))
        size = self.options.micro_batch_size
        chunks = [list(items[start:start + size]) for start in range(0, len(items), size)]
        return [v for chunk in self._pool.map(self._completions, chunks) for v in chunk]

    def _body(self, **fields: Any) -> dict[str, Any]:
        yes_no = self.options.mode == "yes_no"
        return {"model": self.model, "temperature": 0.0, "extra_body": self.options.extra_body or None,
                "max_tokens": 1 if yes_no else self.options.max_new_tokens, **fields}

    def _completions(self, items: list[JudgeItem]) -> list[Verdict]:
        o = self.options
        prompts = [judge_message(i, o.mode, o.max_response_chars) + PLAIN_SUFFIX for i in items]
        extra = {"logprobs": o.top_logprobs} if o.mode == "yes_no" else {}
        reply = self._call("completions", self.client.completions.create, **self._body(prompt=prompts, **extra))
        try:
            choices = sorted(reply.choices, key=lambda c: c.index)
            if len(choices) != len(prompts):
                raise ValueError(f"{len(choices)} choices for {len(prompts)} prompts")
            if o.mode == "yes_no":
                return [verdict_from_top_logprobs(c.logprobs.top_logprobs[0]) for c in choices]
            return [grade_verdict(c.text) for c in choices]
        except (AttributeError, IndexError, TypeError, ValueError) as exc:
            raise RuntimeError(f"judge server {self.base} sent an unexpected /v1/completions reply ({exc!r}): "
                               f"{str(reply)[:300]}; is it OpenAI-compatible?") from exc

    def _chat_one(self, item: JudgeItem) -> Verdict:
        o = self.options
        messages = [{"role": "user", "content": judge_message(item, o.mode, o.max_response_chars)}]
        extra = {"logprobs": True, "top_logprobs": o.top_logprobs} if o.mode == "yes_no" else {}
        reply = self._call("chat/completions", self.client.chat.completions.create,
                           **self._body(messages=messages, **extra))
        try:
            choice = reply.choices[0]
            if o.mode == "grade":
                return grade_verdict(choice.message.content or "")
            top = choice.logprobs.content[0].top_logprobs
            return verdict_from_top_logprobs({t.token: t.logprob for t in top})
        except (AttributeError, IndexError, TypeError) as exc:
            raise RuntimeError(f"judge server {self.base} sent an unexpected /v1/chat/completions reply "
                               f"({exc!r}): {str(reply)[:300]}; is it OpenAI-compatible?") from exc
