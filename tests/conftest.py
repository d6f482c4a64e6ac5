"""Shared fixtures: tiny random models built locally (no hub), and the `ray` marker's check.

Tests use these as fixtures; helpers to import live in tests/helpers.py and tests/agent_helpers.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random Qwen3 (hidden 64, 2 layers) with the real Qwen3 tokenizer, saved in fp32."""
    from rl.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "qwen3-tiny", arch="qwen3", hidden_size=64)


@pytest.fixture(scope="session")
def tiny_moe_model(tmp_path_factory) -> Path:
    """A random Qwen3-MoE (hidden 64, 2 layers, 4 experts, top-2) with the real Qwen3 tokenizer, saved in
    fp32 (transformers holds the experts fused in memory and writes them per expert on disk)."""
    from rl.models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "qwen3-moe-tiny", arch="qwen3_moe", hidden_size=64)


@pytest.fixture(autouse=True)
def _ray_marker_is_honest(request, monkeypatch):
    """A test that starts Ray in this process, or runs while a fixture holds it, must be marked `ray`
    (so `-m "not ray"` skips every one)."""
    import ray

    started = [True] if ray.is_initialized() else []
    real_init = ray.init

    def recording_init(*args, **kwargs):
        context = real_init(*args, **kwargs)  # a failed attempt (no cluster to join) starts nothing
        started.append(True)
        return context

    monkeypatch.setattr(ray, "init", recording_init)
    yield
    if (started or ray.is_initialized()) and request.node.get_closest_marker("ray") is None:
        pytest.fail(f"{request.node.nodeid} starts Ray but is not marked `ray`; add @pytest.mark.ray")


@pytest.fixture
def no_ray_left():
    """Looking up an unknown actor runs ray.init(address="auto"), which joins any cluster on this machine
    (another job's, say); leave the test process disconnected either way."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()
