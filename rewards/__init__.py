"""Rewards: the contract (`rewards.base`), the built-in table and loader (`rewards.registry`)."""
from rewards.base import RewardResult, reward_spec
from rewards.registry import BUILTIN_REWARDS, get_reward
from rl.plugins import load_object

__all__ = ["BUILTIN_REWARDS", "RewardResult", "get_reward", "load_object", "reward_spec"]
