"""RolloutWorker: a Ray actor that turns RolloutRequests into Rollouts with a generation engine.

It owns what happens between prompt tokens and a finished response: the thinking budget (two-phase
generation with STOP_THINKING inserted and masked out of the loss), the loss mask, the behaviour
logprobs, and the weight version the rollout was generated with. Requests for agent envs become
multi-turn episodes (rl/rollout/agent_loop.py) on the same engine. The driver wraps this class with
`ray.remote(...)`; it is a plain class so tests can use it in-process.
"""
from __future__ import annotations

import os
import time
from typing import Any

import torch

from rl.rollout.agent_loop import AgentRollouts
from rl.rollout.engines import Engine, make_engine
from rl.thinking.budget import ThinkingBudget
from rl.thinking.tags import response_prefix
from rl.types import Rollout, RolloutRequest
from rl.weight_sync import decode_bucket


class RolloutWorker:
    def __init__(self, model_path: str, backend: str, *, temperature: float, top_p: float, seed: int,
                 threads: int = 0, engine_kwargs: dict[str, Any] | None = None, engine: Engine | None = None):
        """`engine`: use this engine instead of building one for `backend` (tests pass a scripted one;
        `model_path` then only provides the tokenizer)."""
        from transformers import AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.budget = ThinkingBudget(self.tokenizer)
        self.engine: Engine = engine if engine is not None else make_engine(
            backend, model_path, temperature=temperature, top_p=top_p, seed=seed,
            **(engine_kwargs or {}))
        self.weights_version = 0
        self.agents = AgentRollouts(self.engine, self.tokenizer)

    def pid(self) -> int:
        return os.getpid()

    def generate(self, requests: list[RolloutRequest]) -> list[Rollout]:
        """Generate every request, in request order: agent episodes (`request.env` set) run through
        rl/rollout/agent_loop.py, the others as single turns here."""
        if requests:
            torch.manual_seed(requests[0].seed)  # engines without a seeded generator sample from torch's
        is_agent = [r.env is not None for r in requests]
        single = [r for r, a in zip(requests, is_agent) if not a]
        agent = [r for r, a in zip(requests, is_agent) if a]
        singles = iter(self._generate_single(single) if single else [])
        episodes = iter(self.agents.run(agent, self.weights_version) if agent else [])
        return [next(episodes) if a else next(singles) for a in is_agent]

    def _generate_single(self, requests: list[RolloutRequest]) -> list[Rollout]:
        """One turn each; budgeted thinking requests take a second phase after the cut."""
        first_limits = [self._phase1_limit(r) for r in requests]
        first = self.engine.generate([r.prompt_ids for r in requests], first_limits)

        # Phase 2: continue the ones cut at their thinking budget (inserting STOP_THINKING when the
        # model had not closed its thought) and let them answer with the tokens that are left.
        follow, inserts, prompts, limits = [], [], [], []
        for i, (req, out) in enumerate(zip(requests, first)):
            if first_limits[i] == req.max_new_tokens or out.finish_reason != "length":
                continue
            insert = self.budget.stop_ids if self.budget.hit(out.token_ids, first_limits[i]) else []
            follow.append(i)
            inserts.append(insert)
            prompts.append(req.prompt_ids + out.token_ids + insert)
            # The inserted text counts against max_new_tokens too: a response never exceeds it.
            limits.append(max(req.max_new_tokens - len(out.token_ids) - len(insert), 0))
        second = dict(zip(follow, zip(inserts, self.engine.generate(prompts, limits)))) if follow else {}

        rollouts = []
        for i, (req, out) in enumerate(zip(requests, first)):
            ids, mask, logprobs, finish = list(out.token_ids), [1] * len(out.token_ids), list(out.logprobs), out.finish_reason
            insert: list[int] = []
            if i in second:
                insert, cont = second[i]
                ids += insert + cont.token_ids
                mask += [0] * len(insert) + [1] * len(cont.token_ids)  # inserted text was not sampled
                logprobs += [0.0] * len(insert) + cont.logprobs
                finish = cont.finish_reason
            rollouts.append(Rollout(
                request=req, response_ids=ids, loss_mask=mask, logprobs=logprobs,
                text=self.tokenizer.decode(ids, skip_special_tokens=True), finish_reason=finish,
                budget_hit=bool(insert), weights_version=self.weights_version,
                thinking_tokens=len(out.token_ids) if insert else self._thinking_tokens(req, ids)))
        return rollouts

    def _thinking_tokens(self, req: RolloutRequest, ids: list[int]) -> int:
        """Tokens the model spent in its think block (for a budget-cut thought: the phase-1 tokens)."""
        # The last prompt tokens tell whether the prompt opened the block (QwQ-style templates).
        opened = response_prefix(self.tokenizer.decode(req.prompt_ids[-4:])) in ("<think>\n", "<think>")
        return self.budget.thinking_tokens(ids, prompt_opened_think=opened)

    @staticmethod
    def _phase1_limit(req: RolloutRequest) -> int:
        if req.thinking and req.thinking_budget is not None:
            return min(req.thinking_budget, req.max_new_tokens)
        return req.max_new_tokens

    def weight_dtype(self) -> str:
        """The dtype the engine holds weights in; the learner casts to it before sending (half the bytes
        for a bf16 engine)."""
        return str(self.engine.dtype).removeprefix("torch.")

    def weight_group_size(self) -> int:
        """Ranks this worker's engine takes in the collective weight sync's group (its processes)."""
        return self.engine.weight_group_size()

    def join_weight_group(self, host: str, port: int, first_rank: int, world_size: int) -> None:
        self.engine.join_weight_group(host, port, first_rank, world_size)

    def receive_weights(self, version: int) -> float:
        """The collective sync's receiving end: the engine loads each bucket as the learner broadcasts
        it. Returns seconds spent (waiting for the broadcast included)."""
        start = time.perf_counter()
        self.engine.receive_weights()
        self.weights_version = version
        return time.perf_counter() - start

    def load_weights(self, weights: list, version: int) -> float:
        """Load the learner's weights: (name, tensor) pairs, or the object refs of its weight buckets
        in order (the driver passes the refs of `Learner.weight_bucket` calls, so the weights never
        pass through the driver). Each bucket is fetched when the engine reaches it, possibly while
        the learner still produces the next, and this process holds at most one bucket besides the
        model. Returns seconds spent.
        """
        import itertools

        start = time.perf_counter()
        if weights and not isinstance(weights[0], tuple):
            import ray

            weights = itertools.chain.from_iterable(decode_bucket(ray.get(ref)) for ref in weights)
        self.engine.load_weights(weights)
        self.weights_version = version
        return time.perf_counter() - start
