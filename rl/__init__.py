"""Qwen3-style RL post-training: config, driver, GRPO math, rollout and learner actors, CLI."""
