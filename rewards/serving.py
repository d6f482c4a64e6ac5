"""Serving a reward model to many callers: what the judge (rewards/judge.py) and the scalar reward
model (rewards/reward_model.py) share.

- `AsyncBatcher`: concurrent `await score(...)` calls merged into micro-batches for one model;
- named Ray actors: the driver creates "rl-judge", "rl-reward-model" (replicas "-1", "-2", ...) in
  `RAY_NAMESPACE`; any process, also a reward runner's worker process, finds them with `named_actors`;
- `cached_worker`: one in-process model per (kind, folder, options) when no actor serves it;
- `load_tokenizer`: a tokenizer with a pad token.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar


def load_tokenizer(path: str):
    """A tokenizer with a pad token (falls back to EOS: pads are masked, so which token does not matter)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


T = TypeVar("T")
R = TypeVar("R")


class AsyncBatcher(Generic[T, R]):
    """Merges concurrent `await submit(item)` calls into one `fn(items)` call.

    A batch is flushed when `max_batch` items wait or `max_wait_ms` after its first item arrived. `fn`
    runs in a thread, so the event loop keeps accepting calls meanwhile (they form the next batch).
    """

    def __init__(self, fn: Callable[[list[T]], list[R]], max_batch: int, max_wait_ms: float):
        self.fn, self.max_batch, self.max_wait_s = fn, max_batch, max_wait_ms / 1000
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # strong references: the loop keeps only weak ones

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            # A new event loop (e.g. one asyncio.run per call in a script): the old loop is gone, and with
            # it any callers still waiting there, so its state is dropped.
            self._loop, self._pending, self._timer = loop, [], None
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if len(self._pending) >= self.max_batch:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        task = self._loop.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await asyncio.to_thread(self.fn, [item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(batch)} items")
        except Exception as exc:  # handed to every caller of this batch, so nothing is lost
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results):
            if not future.done():  # a caller may have been cancelled (e.g. by a reward timeout)
                future.set_result(result)


RAY_NAMESPACE = "rl-rewards"
"""Create judge and reward-model actors in this Ray namespace so that every process finds them by name,
including the reward runner's worker processes (spawned by a RewardWorker actor, they join the cluster
in a namespace of their own)::

    ray.remote(JudgeWorker).options(name="rl-judge", namespace=RAY_NAMESPACE, max_concurrency=256).remote(path)
"""

_WORKERS: dict[tuple[str, str], Any] = {}
_ACTORS: dict[str, list[Any]] = {}
_WORKERS_LOCK = threading.Lock()


def replica_name(name: str, index: int) -> str:
    """Replica 0 is called `name`, the others `name-1`, `name-2`, ... (`named_actors` finds them all)."""
    return name if index == 0 else f"{name}-{index}"


def named_actors(name: str) -> list[Any]:
    """The Ray actors called `name`, `name-1`, `name-2`, ... (replicas, see `replica_name`), looked up
    in this process's namespace, then in `RAY_NAMESPACE`; [] if there is none.

    A process not connected to Ray yet (a reward runner's worker process, spawned by a Ray actor, is
    not) joins the cluster that `ray.init(address="auto")` finds: $RAY_ADDRESS, else this node's.
    """
    import ray

    if not ray.is_initialized():
        try:
            ray.init(address="auto", log_to_driver=False)
        except ConnectionError:  # no cluster to join, hence no actor of that name
            return []
    # Cached per Ray job: a lookup is a GCS round trip, and a new ray.init must not reuse dead handles.
    key = f"{ray.get_runtime_context().get_job_id()}/{name}"
    if key not in _ACTORS:
        replicas: list[Any] = []
        while (actor := _get_actor(replica_name(name, len(replicas)))) is not None:
            replicas.append(actor)
        if not replicas:
            return []  # not cached: the driver may still be creating it
        _ACTORS[key] = replicas
    return _ACTORS[key]


def _get_actor(name: str) -> Any | None:
    import ray

    for namespace in (None, RAY_NAMESPACE):
        try:
            return ray.get_actor(name, namespace=namespace)
        except ValueError:  # ray.get_actor's way of saying "no actor has that name"
            pass
    return None


def cached_worker(make: Callable[..., Any], model: str, options: dict[str, Any]) -> Any:
    """One in-process worker per (kind, model, options): loading a model per call would dominate. The kind
    is part of the key: one folder can serve as both a judge and a reward model."""
    key = (make.__qualname__, model, json.dumps(options, sort_keys=True, default=str))
    with _WORKERS_LOCK:
        if key not in _WORKERS:
            _WORKERS[key] = make(model, **options)
        return _WORKERS[key]
