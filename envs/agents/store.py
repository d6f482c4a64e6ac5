"""store: multi-step function calling over a small stateful shop API, where tool results feed later calls
(BFCL multi-turn style: the goal is checked on the final state of the backend, not on the call text).

    task `agent_store` (env `store`): "Cancel Maria Lopez's pending order of a desk lamp."
    find_user(name="Maria Lopez")          -> {"user_id": "U-4821"}
    list_orders(user_id="U-4821")          -> [{"order_id": "O-1937", "item": "desk lamp", "status": "pending", ...}]
    cancel_order(order_id="O-1937")        -> "order O-1937 cancelled"
    final answer (no tool call)            -> reward 1.0 when the backend state equals the goal state

Ids are random per row, so a call cannot be guessed: each needs the result of an earlier one. Goals:
`cancel` (cancel one pending order), `ship_to` (change a pending order's shipping city) and `total`
(answer how much a user spent on delivered orders; the state must stay unchanged). Anything else the
model changes on the way (a wrong order cancelled) makes the final state differ: reward 0.
"""
from __future__ import annotations

import copy
import random
import re
from typing import Any, Callable

from envs.agents.tools import ToolEnv, ToolError, tool_schema
from envs.base import StepResult, row_messages
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec

SYSTEM_PROMPT = ("You are a shop assistant with tools to look up users and orders. Use the tools to do what the "
                 "user asks; ids come from earlier tool results. When you are done, reply without a tool call.")
TOOLS = [
    tool_schema("find_user", "Find a user by full name; returns their user_id.", {"name": "string"}),
    tool_schema("list_orders", "List a user's orders: order_id, item, status, price, city.", {"user_id": "string"}),
    tool_schema("cancel_order", "Cancel a pending order.", {"order_id": "string"}),
    tool_schema("set_shipping_city", "Change the shipping city of a pending order.",
                {"order_id": "string", "city": "string"}),
]
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")

FIRST = ["Maria", "John", "Aiko", "Omar", "Lena", "Carlos", "Priya", "Tom", "Sara", "Ivan", "Nadia", "Felix"]
LAST = ["Lopez", "Smith", "Tanaka", "Haddad", "Berg", "Silva", "Nair", "Walsh", "Kim", "Petrov", "Adeyemi", "Roth"]
ITEMS = {"desk lamp": 35, "kettle": 28, "backpack": 60, "headphones": 120, "yoga mat": 25, "coffee grinder": 45,
         "umbrella": 18, "monitor": 210, "board game": 40, "water bottle": 15}
CITIES = ["Lisbon", "Osaka", "Denver", "Nairobi", "Oslo", "Lima", "Pune", "Leeds"]


class StoreEnv(ToolEnv):
    max_turns = 6

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        self.state = copy.deepcopy(row["world"])
        self.goal = row["goal"]
        self.tools = TOOLS
        return row_messages(row)

    def functions(self) -> dict[str, Callable[..., Any]]:
        return {"find_user": self.find_user, "list_orders": self.list_orders, "cancel_order": self.cancel_order,
                "set_shipping_city": self.set_shipping_city}

    def find_user(self, name: str) -> dict[str, str]:
        for user in self.state["users"]:
            if user["name"].lower() == str(name).strip().lower():
                return {"user_id": user["id"]}
        raise ToolError(f"no user named {name!r}")

    def list_orders(self, user_id: str) -> list[dict[str, Any]]:
        if not any(u["id"] == user_id for u in self.state["users"]):
            raise ToolError(f"no user with id {user_id!r}")
        return [{k: o[k] for k in ("order_id", "item", "status", "price", "city")}
                for o in self.state["orders"] if o["user_id"] == user_id]

    def _pending(self, order_id: str) -> dict[str, Any]:
        order = next((o for o in self.state["orders"] if o["order_id"] == order_id), None)
        if order is None:
            raise ToolError(f"no order with id {order_id!r}")
        if order["status"] != "pending":
            raise ToolError(f"order {order_id} is {order['status']}; only pending orders can be changed")
        return order

    def cancel_order(self, order_id: str) -> str:
        self._pending(order_id)["status"] = "cancelled"
        return f"order {order_id} cancelled"

    def set_shipping_city(self, order_id: str, city: str) -> str:
        self._pending(order_id)["city"] = str(city)
        return f"order {order_id} will ship to {city}"

    def finish(self, answer: str) -> StepResult:
        state_ok = self.state == self.goal["state"]
        answer_ok = True
        if self.goal["kind"] == "total":
            numbers = [float(n) for n in _NUMBER.findall(answer.replace(",", ""))]
            answer_ok = bool(numbers) and abs(numbers[-1] - self.goal["total"]) < 1e-6
        success = state_ok and answer_ok
        return StepResult([], done=True, reward=float(success), success=success,
                          info={"state_ok": state_ok, "answer_ok": answer_ok})


# ----------------------------------------------------------------------------------------- the task
def _world(rng: random.Random) -> dict[str, Any]:
    names = rng.sample([f"{f} {last}" for f in FIRST for last in LAST], 4)
    ids = rng.sample(range(1000, 10000), 4 + 16)
    users = [{"id": f"U-{ids[i]}", "name": name} for i, name in enumerate(names)]
    orders = []
    for user in users:
        items = rng.sample(sorted(ITEMS), rng.randint(2, 4))
        statuses = ["pending"] + [rng.choice(["pending", "delivered"]) for _ in items[1:]]
        rng.shuffle(statuses)
        for item, status in zip(items, statuses):
            orders.append({"order_id": f"O-{ids[4 + len(orders)]}", "user_id": user["id"], "item": item,
                           "status": status, "price": ITEMS[item], "city": rng.choice(CITIES)})
    return {"users": users, "orders": orders}


def _row(rng: random.Random) -> Row:
    world = _world(rng)
    user = rng.choice(world["users"])
    mine = [o for o in world["orders"] if o["user_id"] == user["id"]]
    target = rng.choice([o for o in mine if o["status"] == "pending"])
    goal_state = copy.deepcopy(world)
    goal_order = next(o for o in goal_state["orders"] if o["order_id"] == target["order_id"])
    kind = rng.choice(["cancel", "ship_to", "total"])
    goal: dict[str, Any] = {"kind": kind, "state": goal_state}
    if kind == "cancel":
        goal_order["status"] = "cancelled"
        prompt = f"Please cancel {user['name']}'s pending order of a {target['item']}."
    elif kind == "ship_to":
        city = rng.choice([c for c in CITIES if c != target["city"]])
        goal_order["city"] = city
        prompt = f"{user['name']} moved: ship their pending order of a {target['item']} to {city} instead."
    else:
        goal["total"] = sum(o["price"] for o in mine if o["status"] == "delivered")
        prompt = (f"How much has {user['name']} spent on delivered orders in total? Answer with the number "
                  "(prices are in dollars; 0 if none).")
    return {"prompt": prompt, "world": world, "goal": goal}


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    if options:
        raise ValueError(f"agent_store takes no options (got {options})")
    rng = random.Random(f"agent-store-{seed}")
    return [_row(rng) for _ in range(size)]


TASK = TaskSpec(
    name="agent_store",
    description="multi-step function calling on a stateful shop API (ids feed later calls); final state checked",
    generate=generate,
    rewards=[RewardSpec("env", 1.0)],
    system_prompt=SYSTEM_PROMPT,
    source="procedural",
    env="store",
)
