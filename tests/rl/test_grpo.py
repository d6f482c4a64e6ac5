"""Tests for rl/grpo.py against numbers computed by hand (written out below, with the arithmetic
in comments), not recomputed with the formulas under test. CPU only, well under a second."""

import math

import pytest
import torch

from rl.grpo import (
    agg_loss,
    entropy_from_logits,
    group_advantages,
    kl_loss,
    kl_penalty,
    logprobs_from_logits,
    policy_loss,
)

ATOL = 1e-5


def close(actual: torch.Tensor, expected: list[float] | float, atol: float = ATOL) -> None:
    torch.testing.assert_close(
        actual.float(), torch.tensor(expected, dtype=torch.float32), atol=atol, rtol=0
    )


# --- group advantages -------------------------------------------------------------------------


def test_group_advantages_with_std_two_groups():
    # Group 1 [1,0,0,1]: mean .5, sample var = 4*.25/3 = 1/3, std .577350 -> +-.5/.577350 = .866025
    # Group 2 [3,1,2,2]: mean 2, sample var = (1+1)/3, std .816497 -> 1/.816497 = 1.224745
    adv = group_advantages(torch.tensor([1.0, 0, 0, 1, 3, 1, 2, 2]), group_size=4)
    close(adv, [0.866025, -0.866025, -0.866025, 0.866025, 1.224745, -1.224745, 0.0, 0.0])


def test_group_advantages_without_std_is_dr_grpo():
    adv = group_advantages(torch.tensor([1.0, 0, 0, 1, 3, 1, 2, 2]), 4, normalize_std=False)
    close(adv, [0.5, -0.5, -0.5, 0.5, 1.0, -1.0, 0.0, 0.0])


def test_group_advantages_zero_variance_group_is_exactly_zero():
    # In float32 mean([.9, .9, .9]) - .9 = 6e-8, which / (0 + eps) would be a fake advantage .06.
    rewards = torch.tensor([0.9, 0.9, 0.9, 0.0, 1.0, 0.5])
    adv = group_advantages(rewards, group_size=3)
    assert torch.equal(adv[:3], torch.zeros(3))
    # The other group is untouched: mean .5, sample std .5 -> [-1, 1, 0].
    close(adv[3:], [-1.0, 1.0, 0.0])


def test_group_of_size_one_gets_zero_advantage():
    adv = group_advantages(torch.tensor([0.3, 1.0, -2.0]), group_size=1)
    assert torch.equal(adv, torch.zeros(3))


def test_group_advantages_rejects_bad_input():
    with pytest.raises(ValueError, match="not divisible by group_size=4"):
        group_advantages(torch.ones(6), group_size=4)
    with pytest.raises(ValueError, match="NaN"):
        group_advantages(torch.tensor([1.0, float("nan")]), group_size=2)
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.ones(2, 2), group_size=2)


# --- loss aggregation ---------------------------------------------------------------------------

# Ragged batch: row 0 has 4 tokens, row 1 has 2; the padded 100s must never count.
LOSS_MAT = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 100.0, 100.0]])
RAGGED = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize(
    ("loss_agg", "max_tokens", "expected"),
    [
        ("token-mean", None, 3.5),  # (1+2+3+4+5+6) / 6
        ("seq-mean-token-mean", None, 4.0),  # (10/4 + 11/2) / 2 = (2.5 + 5.5) / 2
        ("seq-mean-token-sum-norm", None, 5.25),  # (10 + 11) / T=4
        ("seq-mean-token-sum-norm", 8, 2.625),  # (10 + 11) / 8
    ],
)
def test_agg_loss_on_ragged_mask(loss_agg, max_tokens, expected):
    close(agg_loss(LOSS_MAT, RAGGED, loss_agg, max_tokens), expected)
    close(agg_loss(LOSS_MAT, RAGGED.float(), loss_agg, max_tokens), expected)  # 0/1 mask too


def test_agg_loss_empty_rows():
    mask = torch.tensor([[1, 1], [0, 0]])
    loss_mat = torch.tensor([[1.0, 2.0], [7.0, float("inf")]])
    close(agg_loss(loss_mat, mask, "seq-mean-token-mean"), 1.5)  # the empty row is left out
    close(agg_loss(loss_mat, mask, "token-mean"), 1.5)
    close(agg_loss(loss_mat, torch.zeros(2, 2), "token-mean"), 0.0)


def test_agg_loss_rejects_unknown_mode_and_bad_norm():
    choices = "token-mean, seq-mean-token-mean, seq-mean-token-sum-norm"
    with pytest.raises(ValueError, match=choices):
        agg_loss(LOSS_MAT, RAGGED, "seq-sum")
    with pytest.raises(ValueError, match="max_tokens must be > 0"):
        agg_loss(LOSS_MAT, RAGGED, "seq-mean-token-sum-norm", max_tokens=0)
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        agg_loss(LOSS_MAT, RAGGED[:, :2], "token-mean")


# --- policy loss -------------------------------------------------------------------------------

# Five tokens with old_logprobs = 0, so ratio = exp(logprobs), clip range [0.8, 1.28]:
#   a: ratio 1.5, A=+1 -> high-clipped: max(-1.5, -1.28) = -1.28
#   b: ratio 0.5, A=-1 -> low-clipped:  max(0.5, 0.8)    =  0.8
#   c: ratio 1.1, A=+1 -> inside:       max(-1.1, -1.1)  = -1.1
#   d: ratio 0.5, A=+1 -> below range but A>0, clip does not bind: max(-0.5, -0.8) = -0.5
#   e: ratio 1.5, A=-1 -> above range but A<0, clip does not bind: max(1.5, 1.28)  =  1.5
RATIOS = [1.5, 0.5, 1.1, 0.5, 1.5]
ADVS = [1.0, -1.0, 1.0, 1.0, -1.0]


def _clip_case() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    logprobs = torch.tensor([RATIOS]).log().requires_grad_(True)
    return logprobs, torch.zeros(1, 5), torch.tensor([ADVS]), torch.ones(1, 5)


def test_policy_loss_clip_low_and_high():
    logprobs, old, adv, mask = _clip_case()
    loss, m = policy_loss(logprobs, old, adv, mask, clip_low=0.2, clip_high=0.28)
    close(loss, -0.116)  # (-1.28 + 0.8 - 1.1 - 0.5 + 1.5) / 5 = -0.58 / 5
    close(m["pg/clip_frac_low"], 0.2)  # token b
    close(m["pg/clip_frac_high"], 0.2)  # token a
    close(m["pg/clip_frac"], 0.4)
    close(m["pg/ratio_mean"], 1.02)  # 5.1 / 5
    close(m["pg/ratio_max"], 1.5)
    # k3 = (r-1) - ln r: 1.5 -> .0945349, 0.5 -> .1931472, 1.1 -> .0046898; (2a + 2b + c) / 5
    close(m["pg/approx_kl"], 0.1160108)
    assert all(not v.requires_grad for v in m.values())


def test_symmetric_clip_changes_only_the_high_side():
    logprobs, old, adv, mask = _clip_case()
    loss, m = policy_loss(logprobs, old, adv, mask, clip_low=0.2, clip_high=0.2)
    close(loss, -0.1)  # token a now gives -1.2 instead of -1.28: (-1.2+0.8-1.1-0.5+1.5) / 5
    close(m["pg/clip_frac_high"], 0.2)


def test_gradient_is_zero_where_clipping_forbids_the_move():
    logprobs, old, adv, mask = _clip_case()
    loss, _ = policy_loss(logprobs, old, adv, mask)
    loss.backward()
    # d(-A * ratio)/d logprob = -A * ratio, / 5 tokens; a and b are clipped -> 0.
    # c: -1.1/5 = -0.22, d: -0.5/5 = -0.1, e: +1.5/5 = 0.3
    close(logprobs.grad, [[0.0, 0.0, -0.22, -0.1, 0.3]])


def test_per_sequence_advantages_broadcast_and_mask():
    # Row 0: ratio 1 everywhere, A=2 -> -2 per token; row 1: ratio 1.5 on one unmasked token,
    # A=+1 -> high-clipped -1.28. Masked tokens hold a huge ratio that must not count anywhere.
    logprobs = torch.tensor([[0.0, 0.0, 5.0], [math.log(1.5), 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    loss, m = policy_loss(logprobs, torch.zeros(2, 3), torch.tensor([2.0, 1.0]), mask)
    close(loss, -1.76)  # token-mean: (-2 - 2 - 1.28) / 3 = -5.28 / 3
    close(m["pg/clip_frac_high"], 1 / 3)
    close(m["pg/ratio_max"], 1.5)
    loss2, _ = policy_loss(
        logprobs, torch.zeros(2, 3), torch.tensor([2.0, 1.0]), mask, loss_agg="seq-mean-token-mean"
    )
    close(loss2, -1.64)  # (-4/2 + -1.28/1) / 2


def test_policy_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(3), torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"\(B, T\)"):
        policy_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ValueError, match="choose one of"):
        policy_loss(
            torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2), loss_agg="x"
        )


# --- truncated importance sampling --------------------------------------------------------------


def test_tis_weights_scale_the_loss_and_are_truncated():
    # old = 0, behavior = [0, ln(1/1.5), ln(1/4)] -> w = exp(old - behavior) = [1, 1.5, 4 -> cap 2]
    # ratio = 1 (logprobs = old), A = +1: per-token loss = -w = [-1, -1.5, -2], mean -1.5.
    logprobs = torch.zeros(1, 3, requires_grad=True)
    behavior = torch.tensor([[0.0, -0.405465, -1.386294]])
    loss, m = policy_loss(
        logprobs, torch.zeros(1, 3), torch.ones(1), torch.ones(1, 3),
        behavior_logprobs=behavior, tis_cap=2.0,
    )
    close(loss, -1.5)
    close(m["pg/tis_weight_mean"], 1.5)
    close(m["pg/tis_clip_frac"], 1 / 3)
    loss.backward()
    close(logprobs.grad, [[-1 / 3, -0.5, -2 / 3]])  # -A * w * ratio / 3: w is a constant


def test_tis_off_by_default_and_cap_needs_behavior():
    args = (torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1), torch.ones(1, 2))
    loss, m = policy_loss(*args, behavior_logprobs=torch.tensor([[-3.0, -3.0]]))
    close(loss, -1.0)  # no correction without tis_cap
    assert "pg/tis_weight_mean" not in m
    with pytest.raises(ValueError, match="behavior_logprobs is None"):
        policy_loss(*args, tis_cap=2.0)
    with pytest.raises(ValueError, match="tis_cap must be > 0"):
        policy_loss(*args, behavior_logprobs=torch.zeros(1, 2), tis_cap=0.0)


# --- KL -----------------------------------------------------------------------------------------


def test_kl_estimators_by_hand():
    # d = logp - ref = [0.5, -1.0]
    logp, ref = torch.tensor([[0.0, -1.0]]), torch.tensor([[-0.5, 0.0]])
    close(kl_penalty(logp, ref, "k1"), [[0.5, -1.0]])
    close(kl_penalty(logp, ref, "k2"), [[0.125, 0.5]])  # 0.5 * d^2
    # exp(-d) + d - 1: e^-0.5 + 0.5 - 1 = 0.1065307; e^1 - 1 - 1 = 0.7182818
    close(kl_penalty(logp, ref, "k3"), [[0.1065307, 0.7182818]])
    close(kl_penalty(ref, ref, "k3"), [[0.0, 0.0]])
    close(kl_loss(logp, ref, torch.tensor([[1, 0]]), "k3"), 0.1065307)  # 2nd token masked
    close(kl_loss(logp, ref, torch.ones(1, 2), "k2"), 0.3125)  # (0.125 + 0.5) / 2


def test_kl_k3_stays_finite_for_extreme_ratios():
    out = kl_penalty(torch.tensor([[-200.0]]), torch.tensor([[0.0]]), "k3")
    assert torch.isfinite(out).all()


def test_kl_rejects_unknown_estimator():
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_penalty(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


# --- entropy and log-probs ------------------------------------------------------------------------


def test_entropy_uniform_is_log_vocab():
    close(entropy_from_logits(torch.zeros(2, 3, 7)), [[1.9459101] * 3] * 2)  # ln 7


def test_entropy_by_hand_and_stable_for_large_logits():
    # probs [.5, .25, .25]: H = .5 ln 2 + 2 * .25 ln 4 = 1.5 ln 2 = 1.0397208
    logits = torch.tensor([[[math.log(0.5), math.log(0.25), math.log(0.25)]]])
    close(entropy_from_logits(logits), [[1.0397208]])
    close(entropy_from_logits(logits + 1000.0), [[1.0397208]], atol=1e-4)
    close(entropy_from_logits(torch.tensor([[[1e4, 1e4, -1e4]]])), [[0.6931472]])  # ln 2
    # Negative case: a peaked distribution is far from ln 2 (H = 0.0402 for logits [5, 0]).
    close(entropy_from_logits(torch.tensor([[[5.0, 0.0]]])), [[0.0401796]])


def test_logprobs_match_log_softmax_gather():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 5, 11, generator=g) * 3
    labels = torch.randint(0, 11, (2, 5), generator=g)
    expected = torch.log_softmax(logits, -1).gather(-1, labels.unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(logprobs_from_logits(logits, labels), expected)
    # bf16 logits are computed in float32 row by row: same answer up to bf16 input rounding.
    ref_bf16 = torch.log_softmax(logits.bfloat16().float(), -1).gather(-1, labels.unsqueeze(-1))
    out_bf16 = logprobs_from_logits(logits.bfloat16(), labels)
    assert out_bf16.dtype == torch.float32
    torch.testing.assert_close(out_bf16, ref_bf16.squeeze(-1))
    # Hand value: logits [0, ln 3] -> p(label 1) = 3/4
    hand = logprobs_from_logits(torch.tensor([[[0.0, math.log(3.0)]]]), torch.tensor([[1]]))
    close(hand, [[-0.2876821]])  # ln 0.75


def test_entropy_bf16_matches_float32():
    logits = torch.randn(2, 4, 9, generator=torch.Generator().manual_seed(1))
    out = entropy_from_logits(logits.bfloat16())
    torch.testing.assert_close(out, entropy_from_logits(logits.bfloat16().float()))


def test_logprobs_reject_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, T, V\)"):
        logprobs_from_logits(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long))


# --- GSPO, KL-Cov, adaptive entropy coefficient (issue 14) -------------------------------------


def test_gspo_sequence_ratio_value_and_gradient_by_hand():
    from rl.grpo import sequence_log_ratio

    # Row 0: log-ratios 0.1, 0.3 (third token masked) -> s0 = exp(0.2) = 1.221403.
    # Row 1: log-ratio -0.4 on its one token -> s1 = exp(-0.4) = 0.670320.
    old = torch.zeros(2, 3)
    logprobs = torch.tensor([[0.1, 0.3, 5.0], [-0.4, 0.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    log_s = sequence_log_ratio(logprobs - old, logprobs, mask)
    close(log_s.detach(), [[0.2, 0.2, 0.2], [-0.4, -0.4, -0.4]])
    # Advantages 1 and -1, clip [1 - 0.5, 1 + 0.5] (s0, s1 inside): seq-mean-token-mean loss
    # = mean(-1 * 1.221403, +1 * 0.670320) = (-1.221403 + 0.670320) / 2 = -0.275541.
    loss, metrics = policy_loss(logprobs, old, torch.tensor([1.0, -1.0]), mask, clip_low=0.5, clip_high=0.5,
                                loss_agg="seq-mean-token-mean", importance_level="sequence")
    close(loss.detach(), -0.275541)
    loss.backward()
    # d/d logprob_t of row 0: -A0 * s0 / |y0| / B = -1.221403 / 2 / 2 = -0.305351 on both tokens;
    # row 1: +0.670320 / 1 / 2 = 0.335160; masked tokens get 0.
    close(logprobs.grad, [[-0.305351, -0.305351, 0.0], [0.335160, 0.0, 0.0]])
    close(metrics["pg/clip_frac"], 0.0)


def test_gspo_clips_the_sequence_ratio():
    # s0 = exp(0.2) = 1.2214 > 1 + 1e-3 with A = 1: clipped, no gradient, loss = -(1 + 1e-3).
    logprobs = torch.tensor([[0.1, 0.3]], requires_grad=True)
    loss, metrics = policy_loss(logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2),
                                clip_low=1e-3, clip_high=1e-3, importance_level="sequence")
    close(loss.detach(), -1.001)
    loss.backward()
    close(logprobs.grad, [[0.0, 0.0]])
    close(metrics["pg/clip_frac_high"], 1.0)
    with pytest.raises(ValueError, match="importance_level"):
        policy_loss(logprobs, torch.zeros(1, 2), torch.tensor([1.0]), torch.ones(1, 2), importance_level="row")


def test_kl_cov_penalises_the_highest_covariance_tokens():
    from rl.grpo import kl_cov_penalty

    # logprobs (masked mean -1): -0.5, -1.5 | -1.0, -1.0; advantages 2, 0 (masked mean 1).
    # cov = (lp + 1) * (A - 1): 0.5*1 = 0.5, -0.5*1 = -0.5 | 0*-1 = 0, 0*-1 = 0 -> top-1 is token (0, 0).
    logprobs = torch.tensor([[-0.5, -1.5], [-1.0, -1.0]], requires_grad=True)
    old = torch.tensor([[-0.8, -1.5], [-1.0, -1.2]])
    penalty, frac = kl_cov_penalty(logprobs, old, torch.tensor([[2.0], [0.0]]), torch.ones(2, 2), ratio=0.25)
    close(penalty.detach(), [[0.3, 0.0], [0.0, 0.0]])   # |-0.5 - -0.8| on the chosen token only
    close(frac, 0.25)
    # In the loss: token (0, 0) gains 2 * 0.3; the token-mean loss moves by 0.6 / 4 = 0.15.
    base, _ = policy_loss(logprobs, old, torch.tensor([2.0, 0.0]), torch.ones(2, 2), clip_low=0.9, clip_high=9.0)
    with_cov, metrics = policy_loss(logprobs, old, torch.tensor([2.0, 0.0]), torch.ones(2, 2), clip_low=0.9,
                                    clip_high=9.0, kl_cov_ratio=0.25, kl_cov_coef=2.0)
    close(with_cov.detach() - base.detach(), 0.15)
    close(metrics["pg/kl_cov_frac"], 0.25)


def test_adaptive_entropy_coefficient_by_hand():
    from rl.grpo import next_entropy_coef

    assert next_entropy_coef(0.0, entropy=0.3, target=0.5, lr=0.1, limit=1.0) == pytest.approx(0.02)
    assert next_entropy_coef(0.02, entropy=0.9, target=0.5, lr=0.1, limit=1.0) == pytest.approx(-0.02)
    assert next_entropy_coef(0.0, entropy=0.0, target=50.0, lr=0.1, limit=1.0) == 1.0   # clamped
