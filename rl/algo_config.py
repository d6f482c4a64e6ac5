"""The `grpo` section: the policy loss and its options (a leaf module; the math is rl/grpo.py).

Presets in configs/algos/ (GRPO, DAPO, Dr. GRPO, GSPO) set this section only; docs/algorithms.md
gives each option's equations and references.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rl.config_io import ConfigError


@dataclass
class GRPOConfig:
    normalize_std: bool = True
    """Divide advantages by the group std (GRPO); False is Dr. GRPO (mean-centred only)."""
    clip_low: float = 0.2
    """PPO ratio clip below 1: ratio >= 1 - clip_low (token-level ratios)."""
    clip_high: float = 0.28
    """PPO ratio clip above 1 (clip-higher, DAPO): ratio <= 1 + clip_high (token-level ratios)."""
    importance_level: Literal["token", "sequence"] = "token"
    """token: PPO/GRPO per-token ratios; sequence: GSPO, one length-normalised ratio per response."""
    seq_clip_low: float = 3e-4
    """GSPO's clip below 1 for the sequence ratio (the GSPO paper's 3e-4)."""
    seq_clip_high: float = 4e-4
    """GSPO's clip above 1 for the sequence ratio (the GSPO paper's 4e-4)."""
    loss_agg: Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm"] = "token-mean"
    """How per-token losses are averaged (GSPO's gradient is exact with seq-mean-token-mean)."""
    kl_coef: float = 0.0
    """Weight of the KL-to-reference loss; 0 creates no reference model at all."""
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"
    """KL estimator (Schulman): k1 = log ratio, k2 = squared/2, k3 = unbiased low-variance."""
    eps: float = 1e-6
    """Added to the group std."""
    tis_cap: float | None = None
    """Truncated importance-sampling cap for off-policy rollouts (None: no correction)."""
    entropy_coef: float = 0.0
    """Entropy bonus: loss -= entropy_coef * mean token entropy; with entropy_target, its start value."""
    entropy_target: float | None = None
    """Mean token entropy (nats) to hold: the coefficient adapts each step by entropy_coef_lr * (target -
    entropy), within +-entropy_coef_max (negative: an entropy penalty). None: a fixed entropy_coef."""
    entropy_coef_lr: float = 0.01
    """Step size of the adaptive entropy coefficient."""
    entropy_coef_max: float = 0.05
    """Bound on the adaptive coefficient's magnitude."""
    kl_cov_ratio: float = 0.0
    """KL-Cov: the share of tokens with the largest logprob-advantage covariance that get a
    |log ratio| penalty (the paper's 2e-3); 0: off."""
    kl_cov_coef: float = 1.0
    """KL-Cov penalty weight."""
    mask_truncated: bool = False
    """DAPO's overlong filtering: responses cut at rollout.max_new_tokens leave the loss entirely
    (besides any soft `overlong` reward)."""


def validate_grpo(g: GRPOConfig) -> None:
    """Ranges of the loss options; each error names the field."""
    numbers = {name: getattr(g, name) for name in ("clip_low", "clip_high", "seq_clip_low", "seq_clip_high", "kl_coef",
                                                   "eps", "entropy_coef", "entropy_coef_lr", "entropy_coef_max",
                                                   "kl_cov_ratio", "kl_cov_coef")}
    for name, value in numbers.items():
        if not math.isfinite(value):
            raise ConfigError(f"grpo.{name} must be a finite number, got {value}")
    if not 0 <= g.clip_low < 1 or g.clip_high < 0 or not 0 <= g.seq_clip_low < 1 or g.seq_clip_high < 0:
        raise ConfigError("grpo.clip_low and grpo.seq_clip_low must be in [0, 1), grpo.clip_high and "
                          "grpo.seq_clip_high >= 0")
    if g.kl_coef < 0 or g.kl_cov_coef < 0:
        raise ConfigError(f"grpo.kl_coef and grpo.kl_cov_coef must be >= 0, got {g.kl_coef} and {g.kl_cov_coef}")
    if not 0 <= g.kl_cov_ratio < 1:
        raise ConfigError(f"grpo.kl_cov_ratio is a share of tokens in [0, 1), got {g.kl_cov_ratio}")
    if g.entropy_coef_lr <= 0 or g.entropy_coef_max < abs(g.entropy_coef):
        raise ConfigError("grpo.entropy_coef_lr must be > 0 and grpo.entropy_coef_max >= |grpo.entropy_coef|")
    if g.entropy_target is not None and not (math.isfinite(g.entropy_target) and g.entropy_target >= 0):
        raise ConfigError(f"grpo.entropy_target is a mean token entropy in nats (>= 0), got {g.entropy_target}")
    if g.tis_cap is not None and not g.tis_cap > 0:
        raise ConfigError(f"grpo.tis_cap must be > 0 (e.g. 2.0) or null, got {g.tis_cap}")
