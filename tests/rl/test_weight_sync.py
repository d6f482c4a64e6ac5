"""Weight sync learner -> rollout engine: after a sync the engine generates with the new weights.

The proof: the logprobs the engine reports for the tokens it sampled equal the learner's logprobs of
the same tokens after the update, and differ from them before the sync.
"""
from __future__ import annotations

import socket

import pytest
import torch

from rl.config import load_config
from rl.round import collate
from rl.learner import Learner
from rl.rollout.worker import RolloutWorker
from rl.types import RolloutRequest


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _learner(model, tmp_path, *extra: str):
    cfg = load_config("configs/tiny.yaml", [f"model.path={model}", "rollout.prompts_per_step=2", "rollout.group_size=2",
                                            "learner.micro_batch_size=4", "learner.lr=1e-2", f"run.output_dir={tmp_path}",
                                            "rollout.temperature=1.0", *extra])  # the worker below samples at T=1
    learner = Learner(cfg, str(model), rank=0, world_size=1)
    learner.setup("127.0.0.1", _free_port())
    return learner


def _max_gap(worker: RolloutWorker, learner: Learner) -> float:
    reqs = [RolloutRequest(uid=f"0-{i}", task="t", prompt_ids=[151644, 872, 198, 17, 10, 17, 30], max_new_tokens=12,
                           thinking=False, seed=i) for i in range(4)]
    rollouts = worker.generate(reqs)
    batch = collate(rollouts, torch.zeros(len(rollouts)), pad_id=0)
    learner_lp = learner.logprobs(batch)                       # (B, T-1): logprob of token t+1
    mask = batch.loss_mask[:, 1:].bool()
    engine_lp = batch.behavior_logprobs[:, 1:]
    return (learner_lp - engine_lp)[mask].abs().max().item()


def _sync_and_check(backend: str, model, tmp_path, tolerance: float, *extra: str):
    learner = _learner(model, tmp_path, *extra)
    worker = RolloutWorker(str(model), backend, temperature=1.0, top_p=1.0, seed=0,
                           engine_kwargs={"kv_cache_gb": 0.25, "max_model_len": 256})
    assert _max_gap(worker, learner) < tolerance  # same initial weights

    # one GRPO update with a large learning rate moves the learner away from the engine
    reqs = [RolloutRequest(uid="1-0", task="t", prompt_ids=[151644, 872, 198, 17], max_new_tokens=8, thinking=False)] * 4
    rollouts = worker.generate(reqs)
    learner.train(collate(rollouts, torch.tensor([1.0, -1.0, 0.5, -0.5]), pad_id=0))
    stale = _max_gap(worker, learner)
    assert stale > 10 * tolerance, "the update should change logprobs visibly"

    seconds = worker.load_weights(learner.named_weights(worker.weight_dtype()), version=1)
    assert worker.weights_version == 1 and seconds >= 0
    assert _max_gap(worker, learner) < tolerance
    return learner, worker


def test_lora_syncs_merged_weights_and_checkpoints_adapter_and_merged_model(tiny_model, tmp_path):
    """With model.lora_rank the learner trains adapters only; the engine gets W + (alpha/r) B A under the
    base names (its logprobs then equal the learner's), and the checkpoint's merged model decodes
    greedily exactly as the learner's adapted model does."""
    from transformers import AutoModelForCausalLM

    learner, worker = _sync_and_check("hf", tiny_model, tmp_path, 1e-4, "model.lora_rank=8", "model.lora_alpha=16")
    module = learner.engine.module
    trainable = {n for n, p in module.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    assert not any("lora" in n or "base_layer" in n for n, _ in learner.named_weights())  # base names only

    learner.save(str(tmp_path / "ckpt"), {"step": 1})
    assert (tmp_path / "ckpt" / "adapter" / "adapter_config.json").is_file()
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt" / "model", torch_dtype=torch.float32).eval()
    prompt = torch.tensor([[151644, 872, 198, 17, 10, 17, 30]])
    with torch.no_grad():
        ours = module.generate(input_ids=prompt, max_new_tokens=12, do_sample=False)
        theirs = merged.generate(input_ids=prompt, max_new_tokens=12, do_sample=False)
    assert ours.tolist() == theirs.tolist()


def _engine_state(worker: RolloutWorker, backend: str) -> dict[str, torch.Tensor]:
    """Every parameter the engine generates with, copied: vLLM's own (after its loader's mapping), of
    every worker process ("rank/name": a tensor-parallel worker holds its shards)."""
    if backend.startswith("vllm"):
        states = worker.engine.llm.collective_rpc(
            lambda self: {n: p.detach().clone() for n, p in self.model_runner.model.named_parameters()})
        return {f"{rank}/{n}": t for rank, state in enumerate(states) for n, t in state.items()}
    return {n: p.detach().clone() for n, p in worker.engine.model.named_parameters()}


def _collective_load(learner: Learner, worker: RolloutWorker, version: int) -> None:
    """CollectiveSync's calls in-process: the worker's engine processes (group ranks 1, 2, ...) receive
    in a thread while the learner (rank 0) broadcasts in 1 MB buckets, so the tiny model takes several."""
    from concurrent.futures import ThreadPoolExecutor

    host, port = learner.rendezvous()
    world = 1 + worker.weight_group_size()
    with ThreadPoolExecutor(1) as pool:
        joined = pool.submit(worker.join_weight_group, host, port, 1, world)
        learner.join_weight_group(host, port, world)
        joined.result()
        received = pool.submit(worker.receive_weights, version)
        learner.broadcast_weights(worker.weight_dtype(), 1.0)
        received.result(timeout=300)
    assert worker.weights_version == version


@pytest.mark.isolated  # a learner and an engine in one process: vLLM's teardown ends the learner's process group,
# and vLLM keeps process-wide state (parallel groups, thread binding)
@pytest.mark.parametrize("backend", ["hf", pytest.param("vllm", marks=pytest.mark.slow),
                                     pytest.param("vllm-tp2", marks=pytest.mark.slow)])
def test_collective_sync_leaves_the_engine_bit_identical_to_the_object_store(backend, tiny_model, tmp_path):
    """The same trained weights loaded both ways: every engine parameter equal bit for bit, and
    different from the initial weights (so each load did change the engine); after the load the engine
    samples with the learner's log-probs (so it generates with the new weights). vllm-tp2: a
    tensor-parallel engine, whose two worker processes each join the group as a rank and whose shards
    vLLM's own loader cuts."""
    from rl.weight_sync import decode_bucket

    if backend.startswith("vllm"):
        # bm25s loads numba/llvmlite, whose ffi.lib once crashed vLLM's CPU start-up (rl.rollout.engines
        # explains); the search agent env imports it in the rollout worker's process, so the engine must start anyway.
        pytest.importorskip("bm25s")
    # vLLM's CPU kernels reduce in another order than torch: ~2e-3 apart in fp32 on logprobs near -12
    tolerance = 1e-4 if backend == "hf" else 1e-2
    learner = _learner(tiny_model, tmp_path)
    vllm_kwargs = {"kv_cache_gb": 0.25, "max_model_len": 256, "tensor_parallel_size": 2 if backend == "vllm-tp2" else 1}
    worker = RolloutWorker(str(tiny_model), backend.removesuffix("-tp2"), temperature=1.0, top_p=1.0, seed=0,
                           engine_kwargs=vllm_kwargs if backend.startswith("vllm") else None)
    assert _max_gap(worker, learner) < tolerance  # same initial weights
    initial = learner.named_weights(worker.weight_dtype())
    reqs = [RolloutRequest(uid="1-0", task="t", prompt_ids=[151644, 872, 198, 17], max_new_tokens=8, thinking=False)] * 4
    learner.train(collate(worker.generate(reqs), torch.tensor([1.0, -1.0, 0.5, -0.5]), pad_id=0))
    assert _max_gap(worker, learner) > 10 * tolerance, "the update should change logprobs visibly"

    _collective_load(learner, worker, version=1)
    assert _max_gap(worker, learner) < tolerance
    collective = _engine_state(worker, backend)
    worker.load_weights(initial, version=0)
    before = _engine_state(worker, backend)
    dtype, mb = worker.weight_dtype(), 1.0
    buckets = [decode_bucket(learner.weight_bucket(i, dtype, mb)) for i in range(learner.weight_bucket_count(dtype, mb))]
    worker.load_weights([pair for bucket in buckets for pair in bucket], version=1)
    object_store = _engine_state(worker, backend)

    assert collective.keys() == object_store.keys()
    assert all(torch.equal(collective[n], object_store[n]) for n in collective)
    assert sum(not torch.equal(before[n], object_store[n]) for n in before) > len(before) // 2
    _collective_load(learner, worker, version=2)  # the group carries a second version too
    assert all(torch.equal(t, object_store[n]) for n, t in _engine_state(worker, backend).items())
    if backend == "vllm-tp2":
        worker.engine.llm.llm_engine.engine_core.shutdown()  # ends the worker processes now



def test_sync_method_auto_and_where_collective_cannot_run():
    """auto: the object store on CPU; an explicit collective where NCCL would put two ranks on one GPU,
    or where a restart re-sync would race ZeRO-3's gathers, is a config error naming the field."""
    from rl.config_io import ConfigError
    from rl.weight_sync import resolve_sync_method

    def cfg(*extra: str):
        return load_config("configs/tiny.yaml", list(extra))

    assert resolve_sync_method(cfg()) == "object_store"  # no GPUs asked for (whatever the driver's node has)
    whole_gpus = ["learner.gpus_per_worker=1", "rollout.gpus_per_worker=1"]
    assert resolve_sync_method(cfg(*whole_gpus)) == "collective"
    assert resolve_sync_method(cfg("learner.gpus_per_worker=0.5", "rollout.gpus_per_worker=0.5")) == "object_store"
    assert resolve_sync_method(cfg("rollout.sync_method=collective")) == "collective"
    with pytest.raises(ConfigError, match="rollout.sync_method=collective: learner and rollout share GPUs"):
        resolve_sync_method(cfg("rollout.sync_method=collective", "rollout.gpus_per_worker=0.5"))
    racy = ["learner.zero_stage=3", "learner.num_workers=2", "rollout.off_policy_steps=1", "grpo.tis_cap=2.0"]
    with pytest.raises(ConfigError, match="ZeRO-3 over several learner ranks"):
        resolve_sync_method(cfg("rollout.sync_method=collective", *racy))
    assert resolve_sync_method(cfg(*racy, *whole_gpus)) == "object_store"


@pytest.mark.slow
@pytest.mark.ray
def test_collective_sync_regroups_after_a_rollout_worker_restarts(tiny_model, tmp_path):
    """Ray actors as the driver makes them: a learner and two HF rollout workers in one weight group. A
    worker killed after version 1 restarts as a new process; re-syncing it forms the group again for
    all members, so it generates exactly what its healthy peer generates, and version 2 reaches both."""
    import os
    import signal
    import time

    import ray

    from rl.fault import Restarts
    from rl.weight_sync import CollectiveSync

    cfg = load_config("configs/tiny.yaml", [f"model.path={tiny_model}", "rollout.prompts_per_step=2",
                                            "rollout.group_size=2", "learner.lr=1e-2", f"run.output_dir={tmp_path}"])
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        learner = ray.remote(Learner).options(num_cpus=0.5).remote(cfg, str(tiny_model), 0, 1)
        ray.get(learner.setup.remote(*ray.get(learner.rendezvous.remote())))
        workers = [ray.remote(RolloutWorker).options(num_cpus=0.5, max_restarts=1).remote(
            str(tiny_model), "hf", temperature=1.0, top_p=1.0, seed=0) for _ in range(2)]
        sync = CollectiveSync.connect([learner], workers, bucket_mb=1.0, zero3=False, restarts=Restarts(1))
        reqs = [RolloutRequest(uid=f"0-{i}", task="t", prompt_ids=[151644, 872, 198, 17], max_new_tokens=8,
                               thinking=False, seed=i) for i in range(4)]
        rollouts = ray.get(workers[0].generate.remote(reqs))
        ray.get(learner.train.remote(collate(rollouts, torch.tensor([1.0, -1.0, 0.5, -0.5]), pad_id=0)))
        weights = sync.publish(1)
        sync.load(weights)

        os.kill(ray.get(workers[0].pid.remote()), signal.SIGKILL)
        while True:  # Ray restarts it with the model's own weights (version 0)
            try:
                ray.get(workers[0].__ray_ready__.remote(), timeout=60)
                break
            except (ray.exceptions.ActorUnavailableError, ray.exceptions.ActorDiedError):
                time.sleep(0.5)
        assert {r.weights_version for r in ray.get(workers[0].generate.remote(reqs))} == {0}
        sync.load(weights, workers=[workers[0]])
        restarted, healthy = ray.get([w.generate.remote(reqs) for w in workers])
        assert {r.weights_version for r in restarted} == {1}
        assert [(r.response_ids, r.logprobs) for r in restarted] == [(r.response_ids, r.logprobs) for r in healthy]

        sync.load(sync.publish(2))
        assert [{r.weights_version for r in ray.get(w.generate.remote(reqs[:1]))} for w in workers] == [{2}, {2}]
    finally:
        ray.shutdown()
