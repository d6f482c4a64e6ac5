"""Generation engines behind one small interface: vLLM (default) and transformers `generate` (fallback).

    engine = make_engine("vllm", model_path, temperature=1.0, top_p=1.0, ...)
    outs = engine.generate([[1, 2, 3], [1, 2]], max_tokens=[64, 64])   # token-in / token-out
    engine.load_weights([("model.embed_tokens.weight", tensor), ...])

Both take prompt token ids and return the sampled token ids with the log-probability of each under
the sampling distribution (logits / temperature), so the learner's recomputed logprobs can be compared
with them. Neither re-tokenises anything.

Weights arrive through rl/weight_sync.py (its VLLMWeightLoader is vLLM's worker extension).

vLLM runs in-process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`, the "uni" executor): in a Ray actor there is
no point in a second process, weights can be loaded as tensors, and on CPU it is ~2x faster than
vLLM's default multiprocess mode (which pins the worker to one core). A tensor-parallel engine
(`tensor_parallel_size` > 1) runs vLLM's multiprocess executor instead: one worker process per shard,
each bound on CPU to its own group of this actor's cores (rl/vllm_setup.py `cpu_threads_bind`).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

import torch

from rl.config import ConfigError
from rl.models import device_and_dtype
from rl.vllm_setup import start_llm
from rl.weight_sync import join_weight_group, receive_buckets, repack_cpu_moe_experts


@dataclass
class EngineOutput:
    token_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    """"stop" (EOS or a stop token) or "length" (max_tokens reached)."""


class Engine(Protocol):
    dtype: torch.dtype

    def generate(self, prompts: list[list[int]], max_tokens: list[int]) -> list[EngineOutput]: ...

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None: ...

    # the collective weight sync (rl/weight_sync.py CollectiveSync): every engine process is a member
    def weight_group_size(self) -> int: ...

    def join_weight_group(self, host: str, port: int, first_rank: int, world_size: int) -> None: ...

    def receive_weights(self) -> None: ...


class HFEngine:
    """transformers `generate`, batched with left padding. The fallback where vLLM does not run."""

    def __init__(self, model_path: str, temperature: float, top_p: float, seed: int, dtype: str = "auto"):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device, torch_dtype = device_and_dtype(dtype)
        self.device = device.type
        self.model = AutoModelForCausalLM.from_pretrained(model_path, torch_dtype=torch_dtype).to(self.device).eval()
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.eos_ids = _eos_ids(self.model.generation_config, tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.temperature, self.top_p = temperature, top_p
        self.dtype = self.model.dtype

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], max_tokens: list[int]) -> list[EngineOutput]:
        outputs: list[EngineOutput | None] = [None] * len(prompts)
        # One generate call per distinct max_tokens (phase-2 budget continuations differ per sample).
        for limit in sorted(set(max_tokens)):
            idx = [i for i, m in enumerate(max_tokens) if m == limit]
            for i, out in zip(idx, self._generate_batch([prompts[i] for i in idx], limit)):
                outputs[i] = out
        return outputs  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], limit: int) -> list[EngineOutput]:
        if limit <= 0:
            return [EngineOutput([], [], "length") for _ in prompts]
        width = max(len(p) for p in prompts)
        ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for row, prompt in enumerate(prompts):
            ids[row, width - len(prompt):] = torch.tensor(prompt)
            mask[row, width - len(prompt):] = 1
        out = self.model.generate(
            input_ids=ids.to(self.device), attention_mask=mask.to(self.device), do_sample=True,
            temperature=self.temperature, top_p=self.top_p, top_k=0, max_new_tokens=limit,
            eos_token_id=self.eos_ids, pad_token_id=self.pad_id, output_logits=True,
            return_dict_in_generate=True)
        new = out.sequences[:, width:].cpu()                                     # (B, L)
        logits = torch.stack(out.logits, dim=1).float() / self.temperature       # (B, L, V)
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, new.to(logits.device).unsqueeze(-1)).squeeze(-1).cpu()
        results = []
        for row in range(len(prompts)):
            tokens = new[row].tolist()
            end = next((k + 1 for k, t in enumerate(tokens) if t in self.eos_ids), None)
            n = end if end is not None else len(tokens)
            results.append(EngineOutput(tokens[:n], logprobs[row, :n].tolist(), "stop" if end else "length"))
        return results

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        state = self.model.state_dict()
        with torch.no_grad():
            for name, tensor in named_tensors:
                if name not in state:
                    raise KeyError(f"weight {name!r} from the learner is not in the rollout model; "
                                   "learner and rollout must load the same architecture")
                state[name].copy_(tensor)

    def weight_group_size(self) -> int:
        return 1

    def join_weight_group(self, host: str, port: int, first_rank: int, world_size: int) -> None:
        self.weight_group = join_weight_group(host, port, first_rank, world_size,
                                              replacing=getattr(self, "weight_group", None))  # set by the first join

    def receive_weights(self) -> None:
        self.load_weights(receive_buckets(self.weight_group))


def check_tensor_parallel(model_path: str, tensor_parallel_size: int) -> None:
    """vLLM shards attention by heads: a named error, before any engine starts, when
    `tensor_parallel_size` does not divide the model's query heads (KV heads: divide, or be a multiple
    of, since vLLM replicates KV heads when there are fewer than shards)."""
    if tensor_parallel_size == 1:
        return
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path).get_text_config()  # a folder or a hub id
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads  # older architectures have no GQA field
    if heads % tensor_parallel_size or (kv_heads % tensor_parallel_size and tensor_parallel_size % kv_heads):
        raise ConfigError(f"rollout.tensor_parallel_size={tensor_parallel_size} must divide the model's attention "
                          f"heads ({heads}) and its KV heads ({kv_heads}, or be a multiple of them) ({model_path}); "
                          "set rollout.tensor_parallel_size to a divisor of both (1 always works)")


class VLLMEngine:
    """vLLM's offline `LLM`, in-process (TP > 1: the shards in worker processes); weights updated
    through a worker extension (see below)."""

    def __init__(self, model_path: str, temperature: float, top_p: float, seed: int, dtype: str = "auto",
                 gpu_memory_utilization: float = 0.5, kv_cache_gb: float = 1.0, enforce_eager: bool = True,
                 max_model_len: int | None = None, tensor_parallel_size: int = 1):
        check_tensor_parallel(model_path, tensor_parallel_size)
        self.llm = start_llm(model_path, tensor_parallel_size=tensor_parallel_size, kv_cache_gb=kv_cache_gb,
                             gpu_memory_utilization=gpu_memory_utilization, dtype=dtype, seed=seed,
                             enforce_eager=enforce_eager, worker_extension_cls="rl.weight_sync.VLLMWeightLoader",
                             max_model_len=max_model_len, logprobs_mode="processed_logprobs")
        from vllm import SamplingParams

        self.in_process = tensor_parallel_size == 1
        self.sampling = SamplingParams
        self.temperature, self.top_p = temperature, top_p
        self.dtype = self.llm.llm_engine.model_config.dtype

    def generate(self, prompts: list[list[int]], max_tokens: list[int]) -> list[EngineOutput]:
        from vllm.inputs import TokensPrompt

        todo = [i for i, m in enumerate(max_tokens) if m > 0]
        params = [self.sampling(temperature=self.temperature, top_p=self.top_p, max_tokens=max_tokens[i],
                                logprobs=0, skip_special_tokens=False) for i in todo]
        results = self.llm.generate([TokensPrompt(prompt_token_ids=prompts[i]) for i in todo], params,
                                    use_tqdm=False)
        outputs = [EngineOutput([], [], "length") for _ in prompts]
        for i, result in zip(todo, results):
            choice = result.outputs[0]
            ids = list(choice.token_ids)
            logprobs = [step[t].logprob for step, t in zip(choice.logprobs, ids)]
            outputs[i] = EngineOutput(ids, logprobs, "length" if choice.finish_reason == "length" else "stop")
        return outputs

    def load_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        if self.in_process:  # the tensors reach the worker as they are, one bucket at a time
            self.llm.collective_rpc("load_named_tensors", args=(named_tensors,))
        else:
            # Worker processes get pickled arguments (an iterator does not pickle), so the tensors go in
            # chunks of ~CHUNK_BYTES within one layerwise reload, as vLLM's own weight-transfer engines do.
            self.llm.collective_rpc(_start_reload)
            for chunk in _chunks(named_tensors, CHUNK_BYTES):
                self.llm.collective_rpc(_load_chunk, args=(chunk,))
            self.llm.collective_rpc(_finish_reload)
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights

    def weight_group_size(self) -> int:
        return self.llm.llm_engine.vllm_config.parallel_config.world_size

    def join_weight_group(self, host: str, port: int, first_rank: int, world_size: int) -> None:
        # every worker process joins at once (collective_rpc calls them concurrently)
        self.llm.collective_rpc("join_weight_group", args=(host, port, first_rank, world_size))

    def receive_weights(self) -> None:
        self.llm.collective_rpc("receive_weights")
        self.llm.reset_prefix_cache()


CHUNK_BYTES = 256 << 20
"""Weights per call into a multiprocess engine's workers."""


def _chunks(named_tensors: Iterable[tuple[str, torch.Tensor]], limit: int) -> Iterator[list[tuple[str, torch.Tensor]]]:
    chunk, size = [], 0
    for name, tensor in named_tensors:
        chunk.append((name, tensor))
        size += tensor.numel() * tensor.element_size()
        if size >= limit:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


# Run in each vLLM worker process (collective_rpc sends them by reference): reload_weights' three parts
# (vllm/model_executor/model_loader/reload/inplace.py), so one reload can take several calls' weights.
def _start_reload(worker) -> None:
    from vllm.model_executor.model_loader.reload import initialize_layerwise_reload

    initialize_layerwise_reload(worker.model_runner.get_model())


def _load_chunk(worker, chunk: list[tuple[str, torch.Tensor]]) -> None:
    from vllm.config import set_current_vllm_config

    with set_current_vllm_config(worker.vllm_config):
        worker.model_runner.get_model().load_weights(iter(chunk))


def _finish_reload(worker) -> None:
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload

    with set_current_vllm_config(worker.vllm_config):
        finalize_layerwise_reload(worker.model_runner.get_model(), worker.vllm_config.model_config)
    repack_cpu_moe_experts(worker.model_runner.get_model())


def make_engine(backend: str, model_path: str, *, temperature: float, top_p: float, seed: int,
                dtype: str = "auto", **vllm_kwargs) -> Engine:
    """`vllm_kwargs` (memory, KV cache, eager mode, max length) only mean something to vLLM."""
    if backend == "vllm":
        return VLLMEngine(model_path, temperature, top_p, seed, dtype=dtype, **vllm_kwargs)
    if backend == "hf":
        return HFEngine(model_path, temperature, top_p, seed, dtype=dtype)
    raise ValueError(f"rollout.backend must be 'vllm' or 'hf', got {backend!r}")


def _eos_ids(generation_config, tokenizer) -> list[int]:
    eos = generation_config.eos_token_id if generation_config.eos_token_id is not None else tokenizer.eos_token_id
    return list(eos) if isinstance(eos, (list, tuple)) else [eos]
