"""RolloutsAhead: rounds are generated in order, never with weights older than the staleness allows,
load the newest published weights first, and hand the driver any error of the background thread."""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import pytest

from rl.pipeline import RolloutsAhead, Weights


@dataclass
class FakeRound:
    step: int
    version: int
    t_sync: float = 0.0
    t_wait: float = 0.0
    weights_version: int = -1


def _run(staleness: int, steps: int = 5, train_s: float = 0.05):
    """A driver loop: take round s, 'train' on it, publish version s + 1. Returns what happened."""
    loads, generated = [], []
    lock = threading.Lock()

    def produce(step: int, weights: Weights) -> FakeRound:
        with lock:
            generated.append((step, weights.version))
        time.sleep(0.02)
        return FakeRound(step, weights.version)

    def load(weights: Weights) -> float:
        loads.append(weights.version)
        return 0.001

    ahead = RolloutsAhead(produce, load, 0, steps, staleness, Weights(0))
    taken = []
    for step in range(steps):
        round_ = ahead.take(step)
        taken.append(round_)
        time.sleep(train_s)                                  # the learner's update on this round
        ahead.publish(Weights(step + 1, ("ref",)))
    ahead.close(timeout_s=5)
    return taken, loads, generated


def test_synchronous_rounds_use_the_previous_update():
    taken, loads, _ = _run(staleness=0)
    assert [r.step for r in taken] == list(range(5))
    assert [r.weights_version for r in taken] == [0, 1, 2, 3, 4]   # on-policy
    assert loads == [1, 2, 3, 4]                                    # one load per update, none for version 0
    assert all(r.t_sync > 0 for r in taken[1:]) and taken[0].t_sync == 0


def test_one_step_off_policy_generates_ahead_but_never_more_than_one_update_behind():
    taken, _, generated = _run(staleness=1, train_s=0.2)
    lags = [r.step - r.weights_version for r in taken]
    assert max(lags) == 1 and min(lags) >= 0
    assert lags[1:] == [1, 1, 1, 1]  # training is slower than generating: always the lagged weights
    # round s+1 was generated while step s trained: it was ready, so taking it waited (almost) not at all
    assert all(r.t_wait < 0.15 for r in taken[2:])
    assert [s for s, _ in generated] == list(range(5))


def test_error_in_the_background_thread_reaches_the_driver():
    def produce(step, weights):
        raise KeyError("bad row 3")

    ahead = RolloutsAhead(produce, lambda w: 0.0, 0, 3, 1, Weights(0))
    with pytest.raises(KeyError, match="bad row 3"):
        ahead.take(0)
    ahead.close()


def test_close_stops_before_the_next_round():
    produced = []
    ahead = RolloutsAhead(lambda s, w: produced.append(s) or FakeRound(s, w.version), lambda w: 0.0, 0, 10, 0,
                          Weights(0))
    ahead.take(0)
    ahead.close(timeout_s=5)
    ahead.publish(Weights(1, ("ref",)))
    time.sleep(0.1)
    assert produced == [0]


def test_weights_travel_as_numpy_and_come_back_bit_exact():
    import pickle

    import torch

    from rl.types import decode_weights, encode_weights

    b = torch.randn(5)
    pairs = [("a", torch.randn(3, 4).to(torch.bfloat16)), ("b", b), ("c", torch.arange(4)), ("tied_b", b)]
    encoded = encode_weights(pairs)
    assert encoded[3][2] is None  # a tied weight travels once
    decoded = list(decode_weights(pickle.loads(pickle.dumps(encoded))))  # what the object store does, roughly
    assert [n for n, _ in decoded] == ["a", "b", "c", "tied_b"]
    for (_, want), (_, got) in zip(pairs, decoded):
        assert got.dtype == want.dtype and torch.equal(got, want)
