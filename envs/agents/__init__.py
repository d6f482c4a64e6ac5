"""Agents: multi-turn, tool-using environments, and where each part of them lives.

    the contract      envs/base.py: `Env` (reset(row) -> messages, step(text) -> StepResult, tools,
                      max_turns, step_timeout_s), `StepResult`, and `call_all` / `call_with_timeout`,
                      which run reset, step and tool calls under their time limits
    the built-ins     this package, one module each with its `Env` class and a `TASK` spec that makes
                      it a task category (`agent_<name>` in envs/tasks.py):
                        python.py   a sandboxed Python interpreter as a tool (math word problems)
                        search.py   BM25 search over a shipped corpus (questions with citations)
                        game.py     guess_number, a text game without tools
                        store.py    multi-step function calling against a small store
                      tools.py is their shared plumbing: Hermes `<tool_call>` parsing, tool schemas,
                      per-call limits (`ToolEnv`)
    the name table    envs/base.py `BUILTIN_ENVS`; any other env by import string (`pkg.mod:Class`,
                      `path/to/file.py:Class`), resolved by rl/plugins.py
    the agent loop    rl/rollout/agent_loop.py: many episodes at once on the rollout worker's engine,
                      token-in/token-out, env tokens masked out of the loss
    the reward        rewards/env.py: what the env scored the episode (`env_info["reward"]`)
docs/agents.md shows how to write your own env.
"""
