"""Starting vLLM's offline engine inside our own processes: what the rollout engines
(rl/rollout/engines.py) and the judge's vLLM backend (rewards/judge_backends.py) both need.

    llm = start_llm(path, tensor_parallel_size=2, kv_cache_gb=1.0, gpu_memory_utilization=0.5, seed=0)

`start_llm` is the one place an engine starts: in this process (TP=1) or with a worker process per
shard (TP > 1), the CPU build's KV cache sized in GiB and its threads bound per shard.
"""
from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator, Mapping


@contextlib.contextmanager
def modules_hidden_from_vllm_kernel_scan() -> Iterator[None]:
    """Take modules vLLM's CPU start-up would crash on out of `sys.modules` while `LLM()` starts.

    Without Triton, vLLM's CPU platform rebinds kernels by walking every attribute of every loaded
    module and calling `vars(value).get(...)` (vllm/triton_utils/dispatcher.py). Objects that proxy
    `__dict__` break that: llvmlite's `ffi.lib`, loaded whenever numba is (bm25s imports numba, so the
    search agent env and the RAG reward do), makes `LLM()` raise AttributeError. The modules are only
    unlisted for the duration; every reference to them stays valid.
    """
    def scannable(module) -> bool:
        namespace = getattr(module, "__dict__", None) or {}
        for value in list(namespace.values()):
            try:
                if hasattr(value, "__dict__") and not isinstance(vars(value), Mapping):
                    return False
            except Exception:  # noqa: BLE001 - odd objects may raise anything on attribute access
                continue
        return True

    with warnings.catch_warnings():  # deprecated module attributes warn when touched
        warnings.simplefilter("ignore")
        hidden = {name: module for name, module in list(sys.modules.items()) if not scannable(module)}
    for name in hidden:
        del sys.modules[name]
    try:
        yield
    finally:
        sys.modules.update(hidden)


def cpu_threads_bind(tensor_parallel_size: int) -> str:
    """A value for the CPU build's VLLM_CPU_OMP_THREADS_BIND: this process's cores in
    `tensor_parallel_size` contiguous groups, one per vLLM worker ("0|1" for 2 workers on 2 cores,
    "0,1,2,3|4,5,6,7" on 8).

    vLLM's default ("auto") gives each worker a NUMA node of its own, so TP=2 on a one-node machine
    fails with "Not enough allowed NUMA nodes to bind threads of 2 local CPUWorkers".
    """
    cores = sorted(os.sched_getaffinity(0))
    if tensor_parallel_size > len(cores):
        raise ValueError(f"tensor_parallel_size={tensor_parallel_size} needs a core per vLLM worker, but this "
                         f"process may run on {len(cores)} core(s) {cores}; lower tensor_parallel_size")
    per_worker = len(cores) // tensor_parallel_size
    groups = [cores[i * per_worker:(i + 1) * per_worker] for i in range(tensor_parallel_size)]
    return "|".join(",".join(str(core) for core in group) for group in groups)


def start_llm(model: str, *, tensor_parallel_size: int, kv_cache_gb: float, gpu_memory_utilization: float,
              **llm_kwargs) -> object:
    """vLLM's offline `LLM` for `model`: the engine core in this process (an actor's), TP=1 in it too
    ("uni" executor), TP > 1 a worker process per shard ("mp"). On CPU the KV cache is `kv_cache_gb`
    (vLLM's GPU memory fraction means nothing there) and each shard's threads are bound to its share of
    this process's cores; on GPU the engine takes `gpu_memory_utilization` of each GPU."""
    import torch

    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # must be set before vLLM starts its engine
    from vllm import LLM

    memory: dict[str, object] = {"gpu_memory_utilization": gpu_memory_utilization}
    if not torch.cuda.is_available():
        memory = {"kv_cache_memory_bytes": int(kv_cache_gb * (1 << 30))}
        if tensor_parallel_size > 1:  # vLLM's default binds a NUMA node per worker: most machines have one
            os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", cpu_threads_bind(tensor_parallel_size))
    with modules_hidden_from_vllm_kernel_scan():
        return LLM(model=model, tensor_parallel_size=tensor_parallel_size,
                   distributed_executor_backend="uni" if tensor_parallel_size == 1 else "mp", **memory, **llm_kwargs)
