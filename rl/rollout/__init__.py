"""The rollout side: prompts in, sampled responses out, on a Ray actor per engine.

    worker.py      RolloutWorker (the actor): single-turn generation with the thinking budget, and
                   the entry point for weight loads
    engines.py     the generation engines behind one interface: vLLM (default), transformers
    agent_loop.py  multi-turn agent episodes (envs/agents/) on the same engine, token-in/token-out
"""
