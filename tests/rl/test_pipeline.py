"""RolloutsAhead: rounds are generated in order, never with weights older than the staleness allows,
load the newest published weights first, and hand the driver any error of the background thread."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from rl.pipeline import RolloutsAhead
from rl.weight_sync import PublishedWeights


@dataclass
class FakeRound:
    step: int
    version: int
    t_sync: float = 0.0
    t_wait: float = 0.0
    weights_version: int = -1


def _run(staleness: int, steps: int = 5):
    """A driver loop: take round s, 'train' on it, publish version s + 1. Off-policy, the 'training'
    of step s lasts until round s + 1 has been produced (as when generation is the faster phase), so
    what the pipeline does is decided by its logic, not by thread timing. Returns what happened."""
    loads, generated = [], []
    produced = [threading.Event() for _ in range(steps)]

    def produce(step: int, weights: PublishedWeights) -> FakeRound:
        generated.append((step, weights.version))
        produced[step].set()
        return FakeRound(step, weights.version)

    def load(weights: PublishedWeights) -> float:
        loads.append(weights.version)
        return 0.001

    ahead = RolloutsAhead(produce, load, 0, steps, staleness, PublishedWeights(0))
    taken = []
    for step in range(steps):
        taken.append(ahead.take(step))
        if staleness and step + 1 < steps:                  # the learner's update on this round
            assert produced[step + 1].wait(timeout=10), f"round {step + 1} was not generated during step {step}"
        ahead.publish(PublishedWeights(step + 1, ("ref",)))
    ahead.close(timeout_s=5)
    return taken, loads, generated


def test_synchronous_rounds_use_the_previous_update():
    taken, loads, generated = _run(staleness=0)
    assert [r.step for r in taken] == list(range(5))
    assert [r.weights_version for r in taken] == [0, 1, 2, 3, 4]   # on-policy
    assert loads == [1, 2, 3, 4]                                    # one load per update, none for version 0
    assert all(r.t_sync > 0 for r in taken[1:]) and taken[0].t_sync == 0
    assert generated == [(s, s) for s in range(5)]


def test_one_step_off_policy_generates_during_the_update_and_is_one_update_behind():
    taken, loads, generated = _run(staleness=1)
    # round s + 1 was generated while the learner made update s + 1 (the loop waited for it before
    # publishing), so with the weights of update s: exactly one update behind, never more
    assert [r.step - r.weights_version for r in taken] == [0, 1, 1, 1, 1]
    assert generated == [(0, 0), (1, 0), (2, 1), (3, 2), (4, 3)]
    assert loads == [1, 2, 3]


def test_error_in_the_background_thread_reaches_the_driver():
    def produce(step, weights):
        raise KeyError("bad row 3")

    ahead = RolloutsAhead(produce, lambda w: 0.0, 0, 3, 1, PublishedWeights(0))
    with pytest.raises(KeyError, match="bad row 3"):
        ahead.take(0)
    ahead.close()


def test_close_stops_before_the_next_round():
    produced = []
    ahead = RolloutsAhead(lambda s, w: produced.append(s) or FakeRound(s, w.version), lambda w: 0.0, 0, 10, 0,
                          PublishedWeights(0))
    ahead.take(0)                                  # the thread now waits for version 1
    assert ahead.close(timeout_s=5)                # and ends instead of producing round 1
    ahead.publish(PublishedWeights(1, ("ref",)))
    assert produced == [0]


def test_weights_travel_as_numpy_and_come_back_bit_exact():
    import pickle

    import torch

    from rl.weight_sync import decode_bucket, encode_bucket

    b = torch.randn(5)
    pairs = [("a", torch.randn(3, 4).to(torch.bfloat16)), ("b", b), ("c", torch.arange(4)), ("tied_b", b)]
    encoded = encode_bucket(pairs)
    assert encoded[3][2] is None  # a tied weight travels once
    decoded = list(decode_bucket(pickle.loads(pickle.dumps(encoded))))  # what the object store does, roughly
    assert [n for n, _ in decoded] == ["a", "b", "c", "tied_b"]
    for (_, want), (_, got) in zip(pairs, decoded):
        assert got.dtype == want.dtype and torch.equal(got, want)
