"""Shared fixtures: tiny random models built locally (no hub), the `ray` marker's check, and the
`isolated` marker (the test runs in a fresh Python process).

Tests use these as fixtures; helpers to import live in tests/helpers.py and tests/agent_helpers.py.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ISOLATED_CHILD = "RL_TEST_ISOLATED_CHILD"

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


SHARED_MODELS = {"tiny_model": "RL_TEST_TINY_MODEL", "tiny_moe_model": "RL_TEST_TINY_MOE_MODEL"}
"""Session models an `isolated` child takes from its parent (environment variable: the folder) instead
of building them again."""


def _tiny(tmp_path_factory, name: str, arch: str) -> Path:
    from rl.models import build_tiny_model

    if built := os.environ.get(SHARED_MODELS[name]):
        return Path(built)
    return build_tiny_model(tmp_path_factory.mktemp("models") / name, arch=arch, hidden_size=64)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A random Qwen3 (hidden 64, 2 layers) with the real Qwen3 tokenizer, saved in fp32."""
    return _tiny(tmp_path_factory, "tiny_model", "qwen3")


@pytest.fixture(scope="session")
def tiny_moe_model(tmp_path_factory) -> Path:
    """A random Qwen3-MoE (hidden 64, 2 layers, 4 experts, top-2) with the real Qwen3 tokenizer, saved in
    fp32 (transformers holds the experts fused in memory and writes them per expert on disk)."""
    return _tiny(tmp_path_factory, "tiny_moe_model", "qwen3_moe")


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


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """A test marked `isolated` runs in a fresh `python -m pytest` of its own node id; its result is the
    child's. The roles it exercises run in fresh processes in a real run (Ray actors), while in-process
    vLLM engines and DeepSpeed worlds leave process-wide state (vLLM's parallel groups and thread
    binding, DeepSpeed's cached process groups) that a later engine in the same process trips over."""
    if pyfuncitem.get_closest_marker("isolated") is None or os.environ.get(ISOLATED_CHILD):
        return None
    root = Path(__file__).resolve().parents[1]
    shared = {var: str(pyfuncitem.funcargs[name]) for name, var in SHARED_MODELS.items() if name in pyfuncitem.funcargs}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "-x", pyfuncitem.nodeid],
                          cwd=root, env={**os.environ, **shared, ISOLATED_CHILD: "1"}, capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.fail(f"isolated run of {pyfuncitem.nodeid} failed (exit {proc.returncode}):\n"
                    f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}", pytrace=False)
    if " passed" not in proc.stdout:  # the child skipped it: say so, rather than report a pass
        reason = next((line for line in proc.stdout.splitlines() if line.startswith("SKIPPED")), proc.stdout[-300:])
        pytest.skip(f"isolated run: {reason}")
    return True
