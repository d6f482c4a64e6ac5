"""Multi-turn, tool-using environments: python (sandboxed interpreter), search (BM25 over a shipped
corpus), guess_number (a text game) and store (multi-step function calling). Each module holds its
`Env` class and a `TASK` spec that makes it a task category (`agent_<name>` in envs/tasks.py)."""
