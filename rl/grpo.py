"""GRPO math: group advantages, the clipped policy loss, KL penalties, entropy and log-probs.

Pure torch (no Ray, vLLM or DeepSpeed imports) so that every formula here is unit-tested on CPU
against hand-computed numbers (tests/test_grpo.py). Shapes: B sequences, T response tokens, V vocab.
`mask` is (B, T), 1/True where a token is trained on (response tokens, not padding or env tokens).
Masked-out positions must still hold finite numbers (e.g. 0): a NaN there would reach the
gradient through exp() even though its loss term is dropped.

Formulas follow the references named on each function: GRPO (DeepSeekMath), Dr. GRPO
(arXiv 2503.20783), DAPO clip-higher (arXiv 2503.14476), truncated importance sampling (TIS) and
verl's `core_algos.agg_loss` / `kl_penalty`.

    .venv/bin/python -m pytest tests/test_grpo.py -q
"""

from __future__ import annotations

from typing import Callable

import torch

LOSS_AGGS = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum-norm")
IMPORTANCE_LEVELS = ("token", "sequence")
KL_ESTIMATORS = ("k1", "k2", "k3")
# Log-ratios are clamped to this range before exp(): exp(89) already overflows float32, and a
# token whose probability moved by e^20 is clipped (or is a bug) anyway. verl uses the same bound.
_MAX_LOG_RATIO = 20.0


def group_advantages(
    rewards: torch.Tensor, group_size: int, normalize_std: bool = True, eps: float = 1e-6
) -> torch.Tensor:
    """Group-relative advantages (GRPO), one per sequence.

    Args:
        rewards: (N,) scalar reward per sample, ordered group by group (the G samples of prompt 0,
            then the G samples of prompt 1, ...); N must be a multiple of `group_size`.
        group_size: G, samples per prompt.
        normalize_std: True: `(r - mean) / (std + eps)` with the sample (unbiased, G-1) std that
            `torch.std` computes, as TRL and verl do. False: `r - mean` (Dr. GRPO, which drops the
            std division because it up-weights near-uniform groups).
        eps: added to the std.

    Returns:
        (N,) float advantages. A group whose rewards are all equal (including any group of size 1,
        where the sample std is undefined, nan in torch) gets exactly 0: it carries no learning
        signal, and `r - mean` computed in float32 can be ~6e-8 instead of 0 (G=3, r=0.9), which
        divided by `std + eps` = `eps` would become a spurious advantage of ~0.06.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D (N,), got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"len(rewards)={rewards.numel()} is not divisible by group_size={group_size}: "
            "pass the G samples of every prompt, group by group"
        )
    if not torch.isfinite(rewards).all():
        # A NaN here means a missing reward slipped through; fail rather than train on NaN.
        raise ValueError("rewards contain NaN/inf: drop or fill samples whose reward is None first")
    groups = rewards.float().view(-1, group_size)  # (N/G, G)
    centered = groups - groups.mean(dim=1, keepdim=True)
    constant = groups.amax(dim=1) == groups.amin(dim=1)  # (N/G,)
    if normalize_std and group_size > 1:
        centered = centered / (groups.std(dim=1, keepdim=True) + eps)
    return centered.masked_fill(constant.unsqueeze(1), 0.0).view(-1)


def agg_loss(
    loss_mat: torch.Tensor, mask: torch.Tensor, loss_agg: str, max_tokens: int | None = None
) -> torch.Tensor:
    """Reduce a per-token loss (B, T) to a scalar, as verl's `agg_loss` does.

    - "token-mean": sum over all unmasked tokens / their count (DAPO; long answers weigh more).
    - "seq-mean-token-mean": mean over tokens within each sequence, then mean over sequences
      (original GRPO). Sequences with no unmasked token are left out of the mean.
    - "seq-mean-token-sum-norm": sum of each sequence's token sum, divided by the constant
      `max_tokens` (default T) instead of by lengths (Dr. GRPO, no length bias). As in verl the
      result is NOT divided by B; pass `max_tokens = B * max_response_len` for TRL's "dr_grpo".
      Keep `max_tokens` constant across steps (e.g. the generation limit), since T varies.

    An all-masked batch gives 0 (with a graph, so backward still works).

    Args:
        loss_mat: (B, T) per-token loss.
        mask: (B, T) bool or 0/1.
        loss_agg: one of LOSS_AGGS.
        max_tokens: normaliser for "seq-mean-token-sum-norm" only; default T.

    Returns:
        0-d tensor.
    """
    if loss_mat.shape != mask.shape or loss_mat.dim() != 2:
        raise ValueError(
            f"loss_mat {tuple(loss_mat.shape)} and mask {tuple(mask.shape)} must both be (B, T)"
        )
    mask = mask.to(loss_mat.dtype)
    # where(), not loss_mat * mask: a masked-out inf/nan (e.g. a padded position) must not leak.
    token_sums = torch.where(mask > 0, loss_mat, torch.zeros_like(loss_mat)).sum(dim=-1)  # (B,)
    token_counts = mask.sum(dim=-1)  # (B,)
    if loss_agg == "token-mean":
        return token_sums.sum() / token_counts.sum().clamp(min=1.0)
    if loss_agg == "seq-mean-token-mean":
        has_tokens = (token_counts > 0).to(loss_mat.dtype)
        seq_means = token_sums / token_counts.clamp(min=1.0)
        return (seq_means * has_tokens).sum() / has_tokens.sum().clamp(min=1.0)
    if loss_agg == "seq-mean-token-sum-norm":
        norm = loss_mat.shape[-1] if max_tokens is None else max_tokens
        if norm <= 0:
            raise ValueError(
                f"max_tokens must be > 0 (a constant such as the generation limit), got {norm}"
            )
        return token_sums.sum() / norm
    raise ValueError(f"unknown loss_agg {loss_agg!r}; choose one of {', '.join(LOSS_AGGS)}")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of `values` (B, T) over `mask` (B, T); 0 when nothing is unmasked. No gradient."""
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    loss_agg: str = "token-mean",
    max_tokens: int | None = None,
    behavior_logprobs: torch.Tensor | None = None,
    tis_cap: float | None = None,
    importance_level: str = "token",
    kl_cov_ratio: float = 0.0,
    kl_cov_coef: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO-clip policy loss with separate low/high clip (DAPO clip-higher), GSPO's sequence-level
    ratio, optional TIS and KL-Cov.

    Per token: ratio = exp(logprobs - old_logprobs), loss = max(-A * ratio, -A * clip(ratio,
    1 - clip_low, 1 + clip_high)); aggregated with `agg_loss(loss_agg, max_tokens)`.

    importance_level "sequence" is GSPO (arXiv 2507.18071): the ratio is each row's length-normalised
    s_i (`sequence_log_ratio`), clipped as a whole. `kl_cov_ratio` > 0 adds KL-Cov (arXiv 2505.22617,
    `kl_cov_penalty`). docs/algorithms.md has the equations.

    Truncated importance sampling (off-policy rollouts, e.g. vLLM sampled the tokens with
    slightly different numerics or one step-stale weights): when `tis_cap` is set, each token's
    loss is multiplied by w = min(exp(old_logprobs - behavior_logprobs), tis_cap), a constant
    (no gradient), as verl/OpenRLHF do. `tis_cap=None` (default) means no correction, even when
    `behavior_logprobs` is passed; `tis_cap` without `behavior_logprobs` is an error.

    Args:
        logprobs: (B, T) log pi_theta(token), with gradient.
        old_logprobs: (B, T) log-probs of the policy that the clip is relative to (no gradient).
        advantages: (B,) per sequence (broadcast over tokens) or (B, T) per token.
        mask: (B, T) bool or 0/1, tokens to train on.
        clip_low, clip_high: ratio is clipped to [1 - clip_low, 1 + clip_high].
        loss_agg, max_tokens: see `agg_loss`.
        behavior_logprobs: (B, T) log-probs from the rollout engine that sampled the tokens.
        tis_cap: truncation of the TIS weight (verl's default is 2.0); must be > 0.

    Returns:
        (loss, metrics). loss is 0-d with gradient. metrics maps names to detached 0-d tensors
        (no .item(), so no device sync here; the caller converts when it logs), all means over
        unmasked tokens: "pg/clip_frac_low" (A < 0 and ratio < 1 - clip_low: gradient cut),
        "pg/clip_frac_high" (A > 0 and ratio > 1 + clip_high), "pg/clip_frac" (their sum),
        "pg/approx_kl" (KL(old || new), Schulman's k3: (ratio - 1) - log ratio), "pg/ratio_mean",
        "pg/ratio_max" (max over unmasked tokens); with TIS also "pg/tis_weight_mean" (after
        truncation) and "pg/tis_clip_frac" (fraction of tokens truncated).
    """
    advantages = _checked_advantages(logprobs, old_logprobs, advantages, mask)
    if not (0.0 <= clip_low < 1.0 and clip_high >= 0.0):
        raise ValueError(f"need 0 <= clip_low < 1 and clip_high >= 0, got {clip_low}, {clip_high}")

    log_ratio = (logprobs - old_logprobs).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    if importance_level == "sequence":
        log_ratio = sequence_log_ratio(log_ratio, logprobs, mask)
    elif importance_level != "token":
        raise ValueError(f"unknown importance_level {importance_level!r}; choose one of {IMPORTANCE_LEVELS}")
    ratio = torch.exp(log_ratio)  # (B, T)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip_low, 1.0 + clip_high)
    per_token = torch.maximum(unclipped, clipped)  # (B, T)

    metrics: dict[str, torch.Tensor] = {}
    if kl_cov_ratio > 0:
        penalty, metrics["pg/kl_cov_frac"] = kl_cov_penalty(logprobs, old_logprobs, advantages, mask, kl_cov_ratio)
        per_token = per_token + kl_cov_coef * penalty
    if tis_cap is not None:
        weights, tis_metrics = _tis_weights(old_logprobs, behavior_logprobs, tis_cap, mask)
        per_token = per_token * weights
        metrics.update(tis_metrics)
    loss = agg_loss(per_token, mask, loss_agg, max_tokens)

    metrics.update(_ratio_metrics(ratio.detach(), log_ratio.detach(), advantages, mask, clip_low, clip_high))
    return loss, metrics


def sequence_log_ratio(log_ratio: torch.Tensor, logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, T) GSPO log-ratios: each row's masked mean of `log_ratio` as the value, the gradient of the
    token's own logprob (log s_i - sg(logprob_t) + logprob_t). Rows without tokens get 0."""
    m = mask.to(log_ratio.dtype)
    per_row = (log_ratio * m).sum(dim=-1) / m.sum(dim=-1).clamp(min=1.0)  # (B,)
    return logprobs - logprobs.detach() + per_row.detach().unsqueeze(-1)


@torch.no_grad()
def distill_advantages(advantages: torch.Tensor, student_logprobs: torch.Tensor, teacher_logprobs: torch.Tensor,
                       mask: torch.Tensor, kl_coef: float, reward_weight: float
                       ) -> tuple[torch.Tensor, dict[str, float]]:
    """Per-token advantages of on-policy distillation (rl/teacher.py): on every sampled token t,
    `reward_weight * A - kl_coef * (log p_student(x_t) - log p_teacher(x_t))`.

    The second term is minus the per-token reverse KL estimate on the student's own samples; fed to the
    policy gradient as an advantage it lowers KL(student || teacher) (its expectation over the student's
    samples is that KL's gradient, as in on-policy distillation), and added to the group advantage it
    mixes distillation with the GRPO reward (`reward_weight` 0: distillation alone).

    Args: advantages (B,) group advantages; student/teacher log-probs and mask (B, T) aligned with the
    batch's input_ids (behavior_logprobs and loss_mask). Returns (B, T) advantages (0 off the mask)
    and metrics: distill/reverse_kl (token mean), distill/teacher_logprob, distill/student_logprob.
    """
    if student_logprobs.shape != teacher_logprobs.shape or student_logprobs.shape != mask.shape:
        raise ValueError(f"student {tuple(student_logprobs.shape)}, teacher {tuple(teacher_logprobs.shape)} and "
                         f"mask {tuple(mask.shape)} log-probs must all be (B, T)")
    mask = mask.float()
    reverse_kl = (student_logprobs - teacher_logprobs) * mask
    out = (reward_weight * advantages.float().unsqueeze(1) - kl_coef * reverse_kl) * mask
    tokens = mask.sum().clamp(min=1)
    metrics = {"distill/reverse_kl": float(reverse_kl.sum() / tokens),
               "distill/teacher_logprob": float((teacher_logprobs * mask).sum() / tokens),
               "distill/student_logprob": float((student_logprobs * mask).sum() / tokens)}
    return out, metrics


def kl_cov_penalty(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                   mask: torch.Tensor, ratio: float) -> tuple[torch.Tensor, torch.Tensor]:
    """KL-Cov's selection (see `policy_loss`): |logprobs - old_logprobs| (B, T) on the top `ratio` share
    (at least one) of unmasked tokens by covariance of logprob and advantage, 0 elsewhere; with the
    share of unmasked tokens selected. The value carries the gradient of |log ratio|."""
    m = mask.bool()
    n = int(m.sum())
    if n == 0:
        return torch.zeros_like(logprobs), torch.zeros((), dtype=logprobs.dtype, device=logprobs.device)
    adv = advantages.expand_as(logprobs)
    lp = logprobs.detach()
    cov = (lp - lp[m].mean()) * (adv - adv[m].mean())  # (B, T)
    k = max(1, int(ratio * n))
    top = cov.masked_fill(~m, float("-inf")).flatten().topk(k).indices
    chosen = torch.zeros(m.numel(), dtype=torch.bool, device=m.device)
    chosen[top] = True
    chosen = chosen.view_as(m)
    with torch.enable_grad():
        penalty = torch.where(chosen, (logprobs - old_logprobs).abs(), torch.zeros_like(logprobs))
    return penalty, torch.tensor(k / n, dtype=logprobs.dtype, device=logprobs.device)


def next_entropy_coef(coef: float, entropy: float, target: float, lr: float, limit: float) -> float:
    """One step of the adaptive entropy coefficient (`grpo.entropy_target`): raise it when the policy's
    mean token entropy is below the target, lower it (down to -limit: an entropy penalty) when above,
    `coef + lr * (target - entropy)` clamped to [-limit, limit]."""
    return max(-limit, min(limit, coef + lr * (target - entropy)))


def _checked_advantages(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor) -> torch.Tensor:
    """`advantages` as (B, 1) or (B, T) after checking every shape against logprobs' (B, T)."""
    if logprobs.dim() != 2 or old_logprobs.shape != logprobs.shape or mask.shape != logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)}, old_logprobs {tuple(old_logprobs.shape)} and "
            f"mask {tuple(mask.shape)} must all be (B, T)"
        )
    if advantages.shape == logprobs.shape[:1]:
        return advantages.unsqueeze(-1)  # (B, 1), broadcast over tokens
    if advantages.shape != logprobs.shape:
        raise ValueError(
            f"advantages {tuple(advantages.shape)} must be (B,) or (B, T) = {tuple(logprobs.shape)}"
        )
    return advantages


@torch.no_grad()
def _ratio_metrics(ratio: torch.Tensor, log_ratio: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                   clip_low: float, clip_high: float) -> dict[str, torch.Tensor]:
    """The clip fractions, approximate KL and ratio statistics of `policy_loss` (see its docstring)."""
    low = ((advantages < 0) & (ratio < 1.0 - clip_low)).to(ratio.dtype)
    high = ((advantages > 0) & (ratio > 1.0 + clip_high)).to(ratio.dtype)
    metrics = {"pg/clip_frac_low": _masked_mean(low, mask), "pg/clip_frac_high": _masked_mean(high, mask)}
    metrics["pg/clip_frac"] = metrics["pg/clip_frac_low"] + metrics["pg/clip_frac_high"]
    metrics["pg/approx_kl"] = _masked_mean((ratio - 1.0) - log_ratio, mask)
    metrics["pg/ratio_mean"] = _masked_mean(ratio, mask)
    # ratio > 0, so filling masked tokens with 0 leaves the max alone (and gives 0 when all are
    # masked) without the device sync that boolean indexing costs.
    metrics["pg/ratio_max"] = ratio.masked_fill(~mask.bool(), 0.0).max()
    return metrics


def _tis_weights(
    old_logprobs: torch.Tensor,
    behavior_logprobs: torch.Tensor | None,
    tis_cap: float,
    mask: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Truncated IS weights (B, T) = min(exp(old - behavior), tis_cap), detached, and metrics."""
    if behavior_logprobs is None:
        raise ValueError(
            "tis_cap is set but behavior_logprobs is None: pass the rollout engine's per-token "
            "logprobs, or set tis_cap=None to train without the importance-ratio correction"
        )
    if behavior_logprobs.shape != old_logprobs.shape:
        raise ValueError(
            f"behavior_logprobs {tuple(behavior_logprobs.shape)} must match old_logprobs "
            f"{tuple(old_logprobs.shape)}"
        )
    if tis_cap <= 0:
        raise ValueError(f"tis_cap must be > 0 (verl uses 2.0), got {tis_cap}")
    with torch.no_grad():
        log_w = (old_logprobs - behavior_logprobs).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
        raw = torch.exp(log_w).detach()
        weights = raw.clamp(max=tis_cap)
        metrics = {
            "pg/tis_weight_mean": _masked_mean(weights, mask),
            "pg/tis_clip_frac": _masked_mean((raw > tis_cap).to(raw.dtype), mask),
        }
    return weights, metrics


def kl_penalty(
    logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k3"
) -> torch.Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from samples of pi_theta (Schulman's k1/k2/k3).

    With d = logprobs - ref_logprobs:
    - "k1": d (unbiased, high variance, can be negative),
    - "k2": 0.5 * d^2 (biased, low variance),
    - "k3": exp(-d) + d - 1 (unbiased, >= 0, low variance; verl's "low_var_kl", GRPO's choice).
      d is clamped to [-20, 20] before exp() so that the value stays finite.

    Args:
        logprobs, ref_logprobs: (B, T).
        estimator: one of KL_ESTIMATORS.

    Returns:
        (B, T) per-token penalty (aggregate with `agg_loss`, or use `kl_loss`).
    """
    if logprobs.shape != ref_logprobs.shape:
        raise ValueError(
            f"logprobs {tuple(logprobs.shape)} and ref_logprobs {tuple(ref_logprobs.shape)} differ"
        )
    diff = logprobs - ref_logprobs
    if estimator == "k1":
        return diff
    if estimator == "k2":
        return 0.5 * diff.square()
    if estimator == "k3":
        neg = (-diff).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)  # log(ref / pi)
        return torch.exp(neg) - neg - 1.0
    raise ValueError(
        f"unknown KL estimator {estimator!r}; choose one of {', '.join(KL_ESTIMATORS)}"
    )


def kl_loss(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    estimator: str = "k3",
    loss_agg: str = "token-mean",
    max_tokens: int | None = None,
) -> torch.Tensor:
    """Scalar KL-to-reference loss: `kl_penalty` (B, T) reduced by `agg_loss` over `mask` (B, T)."""
    return agg_loss(kl_penalty(logprobs, ref_logprobs, estimator), mask, loss_agg, max_tokens)


def _float32_rows(
    fn: Callable[..., torch.Tensor], logits: torch.Tensor, *per_row: torch.Tensor
) -> torch.Tensor:
    """Apply `fn(logits, *per_row)` directly to float32/64 logits; bf16/fp16 logits go one batch
    row at a time in float32, because a softmax over ~150k entries in bf16 is too coarse, and
    upcasting row by row bounds the float32 copy to (T, V) instead of (B, T, V)."""
    if logits.dtype in (torch.float32, torch.float64):
        return fn(logits, *per_row)
    return torch.stack(
        [fn(logits[i].float(), *(t[i] for t in per_row)) for i in range(logits.shape[0])]
    )


def _entropy(logits: torch.Tensor) -> torch.Tensor:
    # Shift by the row max first: H is shift-invariant, and without the shift the difference
    # logsumexp(z) - E[z] cancels catastrophically for large logits (1e-3 error at |z| ~ 1e4).
    shifted = logits - logits.amax(dim=-1, keepdim=True).detach()
    probs = torch.softmax(shifted, dim=-1)
    return torch.logsumexp(shifted, dim=-1) - (probs * shifted).sum(dim=-1)


def _label_logprobs(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    picked = logits.gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    return picked - torch.logsumexp(logits, dim=-1)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy (B, T) of softmax(logits) for logits (B, T, V), in nats.

    H = logsumexp(z) - sum_v softmax(z)_v * z_v with z shifted by its row max, which is stable for
    large logits (no log of a probability that underflowed, no cancellation). Logits must be
    finite (a -inf logit gives 0 * -inf = nan).
    Low-precision logits are computed in float32 (see `_float32_rows`); the result is float32.
    """
    if logits.dim() != 3:
        raise ValueError(f"logits must be (B, T, V), got shape {tuple(logits.shape)}")
    return _float32_rows(_entropy, logits)


def logprobs_from_logits(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Log-probability (B, T) of `labels` (B, T) under softmax(logits), logits (B, T, V).

    Computed as logits[label] - logsumexp(logits), which avoids materialising the full
    (B, T, V) log_softmax. Labels must be valid token ids everywhere: replace padding ids such
    as -100 with any real id and mask those positions out of the loss.
    """
    if logits.dim() != 3 or labels.shape != logits.shape[:2]:
        raise ValueError(
            f"logits must be (B, T, V) and labels (B, T); got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    return _float32_rows(_label_logprobs, logits, labels)
