"""Agent cold-start data: episodes of the scripted policies (envs/agents/demos.py) as SFT chats.

    rl build-agent-data configs/agent_tiny.yaml --out runs/agent_demos.jsonl [--episodes 64]

For every agent task of the config (a task with an env that has a scripted policy), `--episodes` train
rows are played through the real env: the prompt is what `rl train` renders (the task's system prompt,
the env's reset messages and tools, the mode's flag as the soft switch puts it), each assistant turn is
the policy's answer behind an empty think block (a non-thinking turn; the demos show tool use, not
reasoning), and each observation is the env's own StepResult messages, cut as the rollout worker cuts
them. Only episodes the env scores as a success are kept (rejection sampling with a perfect sampler,
so a policy bug cannot teach failures).

Each kept episode is one JSONL row `{"messages": [...], "tools": [...], "loss": "assistant", "task":
NAME}`: `rl sft` trains on every assistant turn of it, encoded token for token as the agent loop
builds an episode (rl/thinking/sft.py `encode_episode`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from envs.base import get_env, run_sync, truncate
from envs.tasks import Task
from rl.config import ConfigError, TrainConfig
from rl.thinking.tags import EMPTY_THINK, with_flag


def demo_episode(task: Task, row: dict[str, Any]) -> dict[str, Any] | None:
    """One scripted episode of `row` as an SFT row, or None when the policy did not succeed."""
    from envs.agents.demos import DEMO_POLICIES

    policy = DEMO_POLICIES[task.env]
    messages, tools = task.chat(row, False)
    prompt = with_flag(messages, False)
    env = get_env(task.env)()
    run_sync(env.reset(row))
    transcript: list[dict[str, Any]] = []
    for _ in range(env.max_turns):
        text = EMPTY_THINK + policy(row, transcript)
        result = run_sync(env.step(text))
        transcript.append({"role": "assistant", "content": text})
        if result.done:
            if not result.success:
                return None
            return {"messages": prompt + transcript, "tools": tools, "loss": "assistant", "task": task.name}
        transcript += [{**m, "content": truncate(m["content"], env.max_observation_chars)} for m in result.messages]
    return None


def build_agent_data(cfg: TrainConfig, out: Path, episodes: int) -> dict[str, Any]:
    """Write up to `episodes` successful demo episodes per agent task of `cfg` to `out`; returns counts."""
    from envs.agents.demos import DEMO_POLICIES
    from envs.tasks import load_task

    tasks = [load_task(t, cfg.run.seed) for t in cfg.data.tasks]
    agents = [t for t in tasks if t.env in DEMO_POLICIES]
    if not agents:
        raise ConfigError(f"no agent task with a scripted policy in data.tasks ({[t.name for t in tasks]}); the "
                          f"envs with one: {sorted(DEMO_POLICIES)} (envs/agents/demos.py)")
    rows, counts = [], {}
    for task in agents:
        kept = [r for r in (demo_episode(task, row) for row in task.train[:episodes]) if r is not None]
        counts[task.name] = {"played": min(episodes, len(task.train)), "kept": len(kept)}
        rows += kept
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(out)  # complete or absent
    return counts
