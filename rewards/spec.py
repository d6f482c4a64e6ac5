"""What a task's rewards are and what crosses the reward actors: small dataclasses (a leaf module).

    RewardSpec("math", weight=1.0)            # one entry of a task's `rewards:` list in YAML
    ScoreRequest(completion, row)             # driver -> RewardWorker
    ScoreResult(reward, components, ...)      # RewardWorker -> driver
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MODEL_BASED_MARKERS = ("judge", "reward_model")


@dataclass
class RewardSpec:
    """One entry of a task's reward list in YAML."""

    name: str
    """Built-in name or import string (see `rewards.registry.get_reward`)."""
    weight: float = 1.0
    """Weight of this component in the sample's reward (a weighted sum over non-None components)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Bound to the reward like functools.partial; must be picklable (they are sent to the workers)."""
    alias: str | None = None
    """Component and metric name; default: the name, or the function name of an import string."""
    model_based: bool | None = None
    """Judge / reward model (for the agreement metric and its timeout); None = guess from the name."""
    timeout_s: float | None = None
    """Per-call limit for this reward; None: the runner's `model_timeout_s` for model-based rewards, else
    its `timeout_s`."""

    def __post_init__(self) -> None:
        if not math.isfinite(float(self.weight)):
            raise ValueError(f"reward {self.name!r}: weight must be a finite number, got {self.weight!r}")
        if self.timeout_s is not None and not self.timeout_s > 0:
            raise ValueError(f"reward {self.name!r}: timeout_s must be > 0 (or null for the default), "
                             f"got {self.timeout_s!r}")

    @property
    def key(self) -> str:
        """The component name used in results and metrics ("pkg.mod:score" -> "score")."""
        return self.alias or self.name.rpartition(":")[2]

    @property
    def is_model_based(self) -> bool:
        if self.model_based is not None:
            return self.model_based
        return any(marker in self.name.lower() for marker in MODEL_BASED_MARKERS)


@dataclass
class ScoreRequest:
    completion: str
    """Raw completion text, including any <think> block."""
    row: dict[str, Any]
    """Dataset columns plus "task" (and "env_info" for agent tasks)."""


@dataclass
class ScoreResult:
    reward: float
    """Weighted sum over non-None components (0.0 when all are None, with all_none=True)."""
    components: dict[str, float | None]
    errors: dict[str, str]
    """Component -> "timeout" | "worker died" | "ExcType: message"."""
    all_none: bool
    details: dict[str, Any]
    """Component -> the details dict its RewardResult carried (JSON-serialisable)."""
