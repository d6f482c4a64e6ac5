"""Shared by the agent tests: a scripted engine (no model) and scripted policies for the built-in envs."""
from __future__ import annotations

import json
import re
from typing import Any, Callable

import torch

from rl.rollout.engines import EngineOutput

LOGPROB = -0.25
"""Every scripted token's logprob: distinguishable from the 0.0 that env tokens get."""


def call(tool: str, /, **arguments: Any) -> str:
    return f'<tool_call>\n{json.dumps({"name": tool, "arguments": arguments})}\n</tool_call>'


class FakeEngine:
    """An rl.rollout.engines.Engine without a model: `policy(context text) -> reply text`. Each reply is encoded
    once and ends with the end-of-turn token; it is cut (finish "length") at the requested max_tokens."""

    dtype = torch.float32

    def __init__(self, tokenizer: Any, policy: Callable[[str], str], end_token: str = "<|im_end|>"):
        self.tokenizer, self.policy = tokenizer, policy
        self.end_id = tokenizer.convert_tokens_to_ids(end_token)
        self.calls: list[tuple[list[list[int]], list[int]]] = []
        self.emitted: list[list[int]] = []

    def generate(self, prompts: list[list[int]], max_tokens: list[int]) -> list[EngineOutput]:
        self.calls.append(([list(p) for p in prompts], list(max_tokens)))
        outs = []
        for ids, limit in zip(prompts, max_tokens):
            reply = self.tokenizer.encode(self.policy(self.tokenizer.decode(ids)), add_special_tokens=False)
            reply.append(self.end_id)
            out = reply[:limit]
            self.emitted.append(out)
            outs.append(EngineOutput(out, [LOGPROB] * len(out), "stop" if len(reply) <= limit else "length"))
        return outs

    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]]) -> None:
        pass


def tool_results(context: str) -> list[str]:
    """The tool responses shown so far in a rendered context, in order."""
    return re.findall(r"<tool_response>\n(.*?)\n</tool_response>", context, re.S)


def store_policy(context: str, wrong: bool = False) -> str:
    """Solves any agent_store goal from the conversation alone (as a model would have to); `wrong`
    cancels a different order than asked (a plausible mistake that must score 0)."""
    results = tool_results(context)
    request = context.split("<|im_start|>user\n")[-1] if not results else \
        re.findall(r"<\|im_start\|>user\n(?!<tool_response>)(.*?)<\|im_end\|>", context, re.S)[-1]
    name = re.search(r"([A-Z][a-z]+ [A-Z][a-z]+)(?:'s| moved| spent)", request) or \
        re.search(r"has ([A-Z][a-z]+ [A-Z][a-z]+)", request)
    if not results:
        return call("find_user", name=name.group(1))
    if len(results) == 1:
        return call("list_orders", user_id=json.loads(results[0])["user_id"])
    orders = json.loads(results[1])
    if "spent" in request:
        return f"The total is {sum(o['price'] for o in orders if o['status'] == 'delivered')}."
    if len(results) == 3:
        return "Done."
    item = re.search(r"order of a ([a-z ]+?)(?:\.| to )", request).group(1)
    pending = [o for o in orders if o["status"] == "pending"]
    target = next(o for o in pending if o["item"] == item)
    if wrong:
        target = next((o for o in orders if o["order_id"] != target["order_id"]), target)
        return call("cancel_order", order_id=target["order_id"])
    if "moved" in request:
        city = re.search(r" to ([A-Z][a-z]+) instead", request).group(1)
        return call("set_shipping_city", order_id=target["order_id"], city=city)
    return call("cancel_order", order_id=target["order_id"])
