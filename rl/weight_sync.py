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

The second transport, `CollectiveSync` (`rollout.sync_method: collective`), has the same `publish` /
`load` pair: a torch.distributed group of its own (vLLM's stateless group: a TCP store at learner rank
0's node IP, apart from the learners' DeepSpeed world) spans learner rank 0 (group rank 0, the sender)
and every process of every engine (a tensor-parallel vLLM engine joins with each of its workers, which
all receive the full tensors; vLLM's loader shards them). NCCL on GPU, gloo on CPU, the same code.

    sync = connect_sync(cfg, learners, rollout_workers, restarts)   # the transport rollout.sync_method names
    published = sync.publish(version=step + 1)   # learners' broadcast and engines' receive, concurrently
    seconds = sync.load(published)               # waits until every engine has loaded it

Per bucket the sender broadcasts a JSON header (names, dtypes, shapes, offsets) and one flat byte
buffer (`send_bucket` / `receive_buckets`); the engine loads each bucket as it arrives. Under ZeRO-3
every learner rank takes part in each bucket's gather and only rank 0 sends. A worker restarted after
a fault (a new process) makes `load(weights, workers=[w])` re-create the group for all members and
broadcast the learner's current weights; a learner restart (`--resume`) connects a new group.
`auto` is collective on GPU and the object store on CPU, where it measured ~2x faster (one node:
Ray's shared memory beats a gloo broadcast); `collective_blocker` says where collective cannot run
(learner and rollout sharing a GPU; ZeRO-3 over several ranks with off-policy rollouts). A worker
that dies during a collective transfer fails the run (the broadcast errors on every member);
`rl train --resume` continues it.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import torch

from rl.config_io import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from rl.config import TrainConfig
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
    receives: tuple[Any, ...] = ()
    """Collective sync: the rollout workers' `receive_weights` calls of this version's broadcast."""


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


class CollectiveSender:
    """The collective sync's sending end, mixed into the Learner actor (rl/learner.py), whose `rank`,
    `_bucket_groups` and `_gather_bucket` (one bucket gathered under ZeRO-3, cast, on rank 0) it uses."""

    weight_group: Any = None
    """The collective sync's group, once joined (rank 0 only)."""

    def join_weight_group(self, host: str, port: int, world_size: int) -> None:
        """Rank 0 joins (or joins again, replacing its old group) as the group's rank 0, the sender."""
        self.weight_group = join_weight_group(host, port, 0, world_size, self.weight_group)

    def broadcast_weights(self, dtype: str | None, bucket_mb: float) -> None:
        """Each bucket gathered in turn (every rank calls this under ZeRO-3, where the gather is
        collective; only rank 0 otherwise) and broadcast by rank 0 before the next is gathered, then
        the end mark: no process holds more than one bucket besides the model."""
        for group in self._bucket_groups(dtype, bucket_mb * 2**20):
            # on the group's device (the GPU under NCCL): send_bucket copies it into one buffer there
            bucket = self._gather_bucket(group, dtype, copy=False, device=_sync_device())
            if bucket is not None:
                send_bucket(self.weight_group, bucket)
        if self.rank == 0:
            end_weights(self.weight_group)


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


# ---------------------------------------------------------------------------- collective, both ends
SYNC_TIMEOUT_S = float(os.environ.get("RL_SYNC_TIMEOUT_S", 600))
"""How long a member of the weight group waits for the others (the rendezvous, each broadcast)."""
_ALIGN = 64  # byte offset of each tensor in a bucket's buffer: a dtype view needs aligned storage


def join_weight_group(host: str, port: int, rank: int, world_size: int, replacing: Any = None) -> Any:
    """This process as `rank` of the weight group whose TCP store group rank 0 hosts at host:port; a
    ProcessGroup outside the default torch.distributed world (vLLM's stateless group: the learner's
    DeepSpeed world and a vLLM engine's own groups stay untouched). NCCL on GPU, gloo on CPU.
    `replacing`: this process's group from before (a member restarted, so the group forms again)."""
    from vllm.distributed.utils import (stateless_destroy_torch_distributed_process_group,
                                        stateless_init_torch_distributed_process_group)

    if replacing is not None:
        stateless_destroy_torch_distributed_process_group(replacing)
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    return stateless_init_torch_distributed_process_group(host, port, rank, world_size, backend,
                                                          timeout=timedelta(seconds=SYNC_TIMEOUT_S))


def _sync_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def _broadcast_header(group: Any, header: bytes | None) -> bytes:
    """Rank 0 sends `header`, the others receive it (None): its length, then its bytes."""
    device = _sync_device()
    size = torch.tensor([len(header) if header is not None else 0], dtype=torch.int64, device=device)
    group.broadcast(size, 0).wait()
    if not int(size):
        return b""
    data = (torch.frombuffer(bytearray(header), dtype=torch.uint8).to(device) if header is not None
            else torch.empty(int(size), dtype=torch.uint8, device=device))
    group.broadcast(data, 0).wait()
    return bytes(data.cpu().numpy())


def send_bucket(group: Any, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
    """Group rank 0: one bucket as a JSON header ([name, dtype, shape, byte offset] per tensor; a tied
    weight sent under a second name points at the first) and one flat byte buffer (one broadcast per
    bucket: gloo and NCCL are fast on large messages, slow on many small ones)."""
    layout, seen, offset = [], {}, 0
    for name, t in named_tensors:
        if id(t) in seen:
            layout.append([name, "same_as:" + seen[id(t)]])
            continue
        seen[id(t)] = name
        layout.append([name, str(t.dtype).removeprefix("torch."), list(t.shape), offset])
        offset += -(-t.numel() * t.element_size() // _ALIGN) * _ALIGN
    payload = torch.empty(offset, dtype=torch.uint8, device=_sync_device())
    for (name, t), entry in zip(named_tensors, layout):
        if len(entry) == 4:
            flat = t.detach().reshape(-1).view(torch.uint8)
            payload[entry[3]:entry[3] + flat.numel()].copy_(flat)
    _broadcast_header(group, json.dumps({"bytes": offset, "tensors": layout}).encode())
    group.broadcast(payload, 0).wait()


def end_weights(group: Any) -> None:
    """Group rank 0: the mark that ends a version's buckets (an empty header)."""
    _broadcast_header(group, b"")


def receive_buckets(group: Any) -> Iterator[tuple[str, torch.Tensor]]:
    """The receiving end of `send_bucket`, up to `end_weights`: (name, tensor) views of each bucket's
    buffer on this process's device, a bucket received when the loader reaches it. Consume it to the
    end: every member takes part in every broadcast."""
    while header := _broadcast_header(group, None):
        bucket = json.loads(header)
        payload = torch.empty(bucket["bytes"], dtype=torch.uint8, device=_sync_device())
        group.broadcast(payload, 0).wait()
        received: dict[str, torch.Tensor] = {}
        for name, dtype, *place in bucket["tensors"]:
            if dtype.startswith("same_as:"):
                yield name, received[dtype.removeprefix("same_as:")]
                continue
            (shape, offset), cast = place, getattr(torch, dtype)
            nbytes = math.prod(shape) * cast.itemsize
            received[name] = payload[offset:offset + nbytes].view(cast).view(shape)
            yield name, received[name]


def repack_cpu_moe_experts(model: torch.nn.Module) -> None:
    """After a reload: pack the MoE experts again into the CPU build's grouped-GEMM layout.

    vLLM 0.32 packs them after the first load only (UnquantizedFusedMoEMethod._setup_kernel skips
    `fused_experts.process_weights_after_loading` on a weight update), so reloaded experts sit in the
    packed storage unpacked and compute garbage, silently. Every sync sends every expert, so each MoE
    layer holds freshly loaded, unpacked weights here. GPU kernels need no packing."""
    if torch.cuda.is_available():
        return
    from vllm.model_executor.layers.fused_moe.unquantized_fused_moe_method import UnquantizedFusedMoEMethod

    for module in model.modules():
        method = getattr(module, "quant_method", None)
        if isinstance(method, UnquantizedFusedMoEMethod) and method.moe_kernel is not None:
            method.moe_kernel.fused_experts.process_weights_after_loading(module)


class VLLMWeightLoader:
    """vLLM worker extension: mixed into vLLM's worker class, so `self.model_runner` is the worker's.

    The method name must not be `update_weights`, which collides with vLLM's own weight-transfer API.
    In-process (uni executor) the object store's tensors arrive as they are (`load_named_tensors`);
    with the collective sync every worker process receives them from the group itself
    (`join_weight_group`, `receive_weights`), so a multiprocess (tensor-parallel) engine works too.
    """

    def load_named_tensors(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        # reload_weights (not model.load_weights): it re-runs the post-load processing that the CPU
        # build applies (weight repacking), without which the next load fails on repacked params.
        self.model_runner.reload_weights(weights_iterator=iter(named_tensors))
        repack_cpu_moe_experts(self.model_runner.get_model())

    weight_group: Any = None
    """The collective sync's group, once joined."""

    def join_weight_group(self, host: str, port: int, first_rank: int, world_size: int) -> None:
        """Join the collective sync's group as rank first_rank + this worker's rank in the engine (every
        worker of a tensor-parallel engine is a member; each receives the full tensors)."""
        self.weight_group = join_weight_group(host, port, first_rank + self.rank, world_size, self.weight_group)

    def receive_weights(self) -> None:
        """One version from the collective sync's group, loaded bucket by bucket as it arrives."""
        self.load_named_tensors(receive_buckets(self.weight_group))


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


class CollectiveSync:
    """Weight buckets broadcast over a collective group: learner rank 0 -> every engine process.

    `publish` starts the transfer at once (the learner's broadcast and the workers' receive, issued
    together so neither waits for a call that never comes); a worker busy generating takes the new
    weights when its current call ends. `load` waits for it. Only the driver's thread publishes."""

    def __init__(self, learners: list, rollout_workers: list, dtype: str, bucket_mb: float, zero3: bool,
                 restarts: Restarts | None = None):
        self.learners, self.rollout_workers, self.restarts = learners, rollout_workers, restarts
        self.dtype, self.bucket_mb = dtype, bucket_mb
        # ZeRO-3: every rank takes part in each bucket's gather; otherwise rank 0 holds the full weights
        self.senders = learners if zero3 else learners[:1]
        self.version = 0
        self.members: list[int] = []  # the workers' process ids the group was formed with
        self.lock = threading.Lock()  # the driver publishes while the rollout thread may re-sync a worker

    @classmethod
    def connect(cls, learners: list, rollout_workers: list, bucket_mb: float, zero3: bool,
                restarts: Restarts | None = None) -> CollectiveSync:
        import ray

        dtype = ray.get(rollout_workers[0].weight_dtype.remote())
        sync = cls(learners, rollout_workers, dtype, bucket_mb, zero3, restarts)
        sync._form_group()
        return sync

    def _form_group(self) -> None:
        """A new group of learner rank 0 (group rank 0) and every process of every engine; all join at
        once (the rendezvous waits for the whole world) at rank 0's node IP, so engines on other
        nodes reach it."""
        import ray

        sizes = ray.get([w.weight_group_size.remote() for w in self.rollout_workers])
        host, port = ray.get(self.learners[0].rendezvous.remote())
        world = 1 + sum(sizes)
        first_ranks = itertools.accumulate([1, *sizes[:-1]])
        joins = [self.learners[0].join_weight_group.remote(host, port, world)]
        joins += [w.join_weight_group.remote(host, port, first, world)
                  for w, first in zip(self.rollout_workers, first_ranks)]
        ray.get(joins)
        self.members = ray.get([w.pid.remote() for w in self.rollout_workers])

    def _broadcast(self, version: int) -> PublishedWeights:
        receives = tuple(w.receive_weights.remote(version) for w in self.rollout_workers)
        sends = tuple(lrn.broadcast_weights.remote(self.dtype, self.bucket_mb) for lrn in self.senders)
        return PublishedWeights(version, others=sends, receives=receives)

    def publish(self, version: int) -> PublishedWeights:
        """Broadcast the learner's weights as `version`; returns at once with the calls' refs. A worker
        that restarted since the group was formed (a new process id) makes the group form again."""
        import ray

        with self.lock:
            if ray.get([w.pid.remote() for w in self.rollout_workers]) != self.members:
                self._form_group()
            self.version = version
            return self._broadcast(version)

    def load(self, weights: PublishedWeights, workers: list | None = None) -> float:
        """Wait until every rollout worker holds `weights`; returns the seconds waited. `workers` (a
        restarted one, a new process outside the group): the group forms again for all members and
        they get the learner's current weights (the newest published version: a restart under
        off-policy lag gets newer weights than asked, which the staleness bound allows)."""
        import ray

        t0 = time.perf_counter()
        if workers is not None:
            if not weights.receives:  # the model's own weights, which a restarted worker starts with
                return 0.0
            with self.lock:
                self._form_group()
                weights = self._broadcast(self.version)
        if self.restarts is None:
            ray.get(list(weights.receives))
        else:
            self.restarts.tolerate("rollout", self.rollout_workers, list(weights.receives))
        ray.get(list(weights.others))  # the learners' side: surface their errors
        return time.perf_counter() - t0


def collective_blocker(cfg: TrainConfig) -> str | None:
    """Why the collective sync cannot run with this config, or None."""
    r, lrn = cfg.rollout, cfg.learner
    if 0 < lrn.gpus_per_worker < 1 or 0 < r.gpus_per_worker < 1:
        return ("learner and rollout share GPUs (a fractional gpus_per_worker), and NCCL takes no two ranks on "
                "one GPU (CUDA IPC would be the colocated transport; not built)")
    if lrn.zero_stage == 3 and lrn.num_workers > 1 and r.off_policy_steps > 0:
        return ("ZeRO-3 over several learner ranks with off_policy_steps > 0: re-syncing a restarted engine calls "
                "the ranks from the rollout thread while the driver trains them, in an order ZeRO-3's gathers "
                "cannot take")
    return None


def resolve_sync_method(cfg: TrainConfig) -> str:
    """`rollout.sync_method` with `auto` decided: collective (NCCL) where the learner and the engines hold
    GPUs and it can run; on CPU the object store, which measured ~2x faster on one node.
    Raises ConfigError for `collective` where it cannot run (the driver checks before any actor starts)."""
    method, blocker = cfg.rollout.sync_method, collective_blocker(cfg)
    if method == "collective" and blocker:
        raise ConfigError(f"rollout.sync_method=collective: {blocker}; set rollout.sync_method to object_store "
                          "(or auto)")
    if method == "auto":  # GPUs as the config asks for them: the driver itself may run on a CPU-only head node
        on_gpus = cfg.learner.gpus_per_worker > 0 and cfg.rollout.gpus_per_worker > 0
        return "collective" if on_gpus and not blocker else "object_store"
    return method


def connect_sync(cfg: TrainConfig, learners: list, rollout_workers: list,
                 restarts: Restarts | None = None) -> ObjectStoreSync | CollectiveSync:
    """The transport `rollout.sync_method` names, connected to the actor groups."""
    bucket_mb = cfg.rollout.sync_bucket_mb
    if resolve_sync_method(cfg) == "collective":
        return CollectiveSync.connect(learners, rollout_workers, bucket_mb, cfg.learner.zero_stage == 3, restarts)
    return ObjectStoreSync.connect(learners, rollout_workers, bucket_mb, restarts)
