"""Weight sync: the learner's newest weights into the rollout engines, bucket by bucket.

    sync = ObjectStoreSync.connect(learners, rollout_workers, bucket_mb=256, restarts=restarts)
    published = sync.publish(version=step + 1)   # learner ranks start copying buckets; returns at once
    seconds = sync.load(published)               # every rollout worker loads them, bucket by bucket

The parts, in the order a weight travels:
  learner side   `bucket_groups` cuts the parameters into ~bucket_mb groups (the same on every rank:
                 ZeRO-3 gathers each group collectively); `Learner.weight_bucket` casts one group to
                 the engine's dtype and `encode_bucket`s it
  transport      `ObjectStoreSync`: the buckets travel as Ray object refs, never through the driver;
                 each worker fetches bucket i while the learner still copies bucket i + 1
  engine side    `decode_bucket` (no copy), then the engine's `load_weights`; for vLLM through the
                 worker extension `VLLMWeightLoader`
A second transport (a collective broadcast from the learner to the engines) is another class with the
same `publish` / `load` pair.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    import numpy as np

    from rl.fault import Restarts


@dataclass(frozen=True)
class PublishedWeights:
    """A weights version and where to read it: `buckets` are learner rank 0's weight buckets in order
    (object refs of `Learner.weight_bucket` calls, which may still be running: a rollout worker loads
    bucket i while the learner copies bucket i + 1); `others` are the other ranks' calls, which only
    report their errors. No buckets: the rollout workers already hold this version (the initial
    weights, or loaded at start-up)."""

    version: int
    buckets: tuple[Any, ...] = ()
    others: tuple[Any, ...] = ()


# ------------------------------------------------------------------------------------- learner side
def bucket_groups(named_params: Iterable[tuple[str, Any]], dtype: str | None,
                  bucket_bytes: float) -> list[list[tuple[str, Any]]]:
    """Parameters in declaration order (the same on every rank), cut into groups of at most
    `bucket_bytes` once cast to `dtype` (a larger single tensor gets a group of its own)."""
    cast = getattr(torch, dtype) if dtype else None
    groups: list[list[tuple[str, Any]]] = [[]]
    size = 0
    for name, p in named_params:
        numel = getattr(p, "ds_numel", p.numel())  # ZeRO-3 keeps a 0-size local shard; ds_numel is the full size
        nbytes = numel * (cast or p.dtype).itemsize
        if groups[-1] and size + nbytes > bucket_bytes:
            groups.append([])
            size = 0
        groups[-1].append((name, p))
        size += nbytes
    return groups


def encode_bucket(named_tensors: list[tuple[str, torch.Tensor]]) -> list[tuple[str, str, np.ndarray | None]]:
    """(name, tensor) pairs -> (name, dtype, numpy array) for Ray's object store. Ray stores numpy
    arrays out of band and a reader maps them without copying, where a pickled torch tensor is copied
    on both ends: ~4x faster for a weight sync. bf16 has no numpy dtype, so it travels as int16 bits."""
    out, seen = [], {}
    for name, t in named_tensors:
        if id(t) in seen:  # a tied weight sent under a second name: once, with a pointer to the first
            out.append((name, "same_as:" + seen[id(t)], None))
            continue
        seen[id(t)] = name
        raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
        out.append((name, str(t.dtype).removeprefix("torch."), raw.numpy()))
    return out


# -------------------------------------------------------------------------------------- engine side
def decode_bucket(bucket: list[tuple[str, str, np.ndarray | None]]) -> Iterator[tuple[str, torch.Tensor]]:
    """`encode_bucket`'s inverse, without copying (the tensors are read-only views of the object
    store's buffer: load them into the model, do not write to them)."""
    decoded: dict[str, torch.Tensor] = {}
    for name, dtype, array in bucket:
        if dtype.startswith("same_as:"):
            yield name, decoded[dtype.removeprefix("same_as:")]
            continue
        with warnings.catch_warnings():  # "non-writable tensor": intended, see above
            warnings.simplefilter("ignore", UserWarning)
            t = torch.from_numpy(array)
        decoded[name] = t.view(torch.bfloat16) if dtype == "bfloat16" else t
        yield name, decoded[name]


class VLLMWeightLoader:
    """vLLM worker extension: mixed into vLLM's worker class, so `self.model_runner` is the worker's.

    The method name must not be `update_weights`, which collides with vLLM's own weight-transfer API.
    In-process (uni executor) the tensors arrive as they are; a multiprocess or GPU-cluster engine
    would take a file path or a collective broadcast here instead.
    """

    def load_named_tensors(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        # reload_weights (not model.load_weights): it re-runs the post-load processing that the CPU
        # build applies (weight repacking), without which the next load fails on repacked params.
        self.model_runner.reload_weights(weights_iterator=iter(named_tensors))


# ---------------------------------------------------------------------------------------- transport
class ObjectStoreSync:
    """Weight buckets through Ray's object store: learner rank 0 -> every rollout worker."""

    def __init__(self, learners: list, rollout_workers: list, dtype: str, bucket_mb: float, buckets: int,
                 restarts: Restarts | None = None):
        self.learners, self.rollout_workers, self.restarts = learners, rollout_workers, restarts
        self.dtype, self.bucket_mb, self.buckets = dtype, bucket_mb, buckets

    @classmethod
    def connect(cls, learners: list, rollout_workers: list, bucket_mb: float,
                restarts: Restarts | None = None) -> ObjectStoreSync:
        """Ask the engines for their dtype (the learner casts to it: half the bytes for a bf16 engine)
        and the learner for how many buckets that makes."""
        import ray

        dtype = ray.get(rollout_workers[0].weight_dtype.remote())
        buckets = ray.get(learners[0].weight_bucket_count.remote(dtype, bucket_mb))
        return cls(learners, rollout_workers, dtype, bucket_mb, buckets, restarts)

    def publish(self, version: int) -> PublishedWeights:
        """Ask every learner rank for its weight buckets, one call per bucket (all ranks take part:
        ZeRO-3 gathers each bucket collectively); returns at once with the object refs, which `load`
        hands to the rollout workers. Only the driver's thread may call this (ranks must see one order)."""
        per_rank = [tuple(lrn.weight_bucket.remote(i, self.dtype, self.bucket_mb) for i in range(self.buckets))
                    for lrn in self.learners]
        return PublishedWeights(version, per_rank[0], tuple(ref for refs in per_rank[1:] for ref in refs))

    def load(self, weights: PublishedWeights, workers: list | None = None) -> float:
        """`weights` into the rollout workers (`workers`: a subset, for a restarted one); returns seconds
        until all have loaded them. The workers get the buckets' object refs, not the weights: each
        fetches bucket i as its engine consumes it. With `restarts`, a worker that dies meanwhile is
        counted and re-synced before it next generates."""
        import ray

        if not weights.buckets:  # the model's own weights, which every worker (also a restarted one) starts with
            return 0.0
        t0 = time.perf_counter()
        targets = self.rollout_workers if workers is None else workers
        loads = [w.load_weights.remote(list(weights.buckets), weights.version) for w in targets]
        ray.get(list(weights.others))  # the other ranks' part of a ZeRO-3 gather: surface their errors
        if self.restarts is None:
            ray.get(loads)
        else:
            self.restarts.tolerate("rollout", targets, loads)
        return time.perf_counter() - t0
