"""Orchestration overhead of the rollout worker: our RolloutWorker (a Ray actor, as in `rl train`)
against the bare engine it wraps, on the same prompts.

    python benchmarks/rollout_overhead.py --out benchmarks/results/rollout_overhead.json
    python benchmarks/rollout_overhead.py --out /tmp/ro.json --prompts 2 --group 4 --max-new-tokens 16 --repeats 1

One Ray actor holds one RolloutWorker (its engine built as the driver builds it, same CPU/thread
settings). The requests are those of step 0 of the config (our chat template, prompts x group). Each
repeat, after one warm-up of both paths:
- worker: `ray.get(actor.generate.remote(requests))` timed from here: Ray transfer of requests and
  Rollouts, the worker's request handling (thinking-budget phases, loss masks, decoding the text),
  and the engine call;
- bare: inside the same actor, right after, the engine alone doing the same amount of work: the same
  prompt ids, each generating exactly as many tokens as the worker's response to it. For vLLM that is
  `LLM.generate` with per-prompt SamplingParams(max_tokens = that length, ignore_eos=True, logprobs=0:
  RL needs the sampled tokens' logprobs). For the hf backend it is the worker's own engine call
  (`HFEngine.generate`, our thin wrapper of transformers `generate`) with the worker's seed, which
  samples the same tokens.
overhead % = (the median over repeats of worker seconds / bare seconds - 1) x 100 (also given from
the totals); the generated token counts of both paths are reported so that a mismatch would show.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from benchmarks.common import config_overrides, config_parser, machine_info, write_json  # noqa: E402
from rl.rollout.engines import VLLMEngine  # noqa: E402
from rl.rollout.worker import RolloutWorker  # noqa: E402


class ProbedRolloutWorker(RolloutWorker):
    """RolloutWorker plus a bare-engine call and timing from inside the actor."""

    def timed_generate(self, requests: list) -> tuple[list, float]:
        start = time.perf_counter()
        rollouts = self.generate(requests)
        return rollouts, time.perf_counter() - start

    def bare_generate(self, prompts: list[list[int]], lengths: list[int], max_tokens: int, seed: int
                      ) -> tuple[int, float]:
        """(generated tokens, seconds) of the engine alone, generating `lengths[i]` tokens for prompt i."""
        start = time.perf_counter()
        if isinstance(self.engine, VLLMEngine):  # vLLM itself, forced to the worker's response lengths
            from vllm import SamplingParams
            from vllm.inputs import TokensPrompt

            todo = [i for i, n in enumerate(lengths) if n > 0]
            params = [SamplingParams(temperature=self.engine.temperature, top_p=self.engine.top_p,
                                     max_tokens=lengths[i], ignore_eos=True, logprobs=0) for i in todo]
            results = self.engine.llm.generate([TokensPrompt(prompt_token_ids=prompts[i]) for i in todo], params,
                                               use_tqdm=False)
            tokens = sum(len(r.outputs[0].token_ids) for r in results)
        else:  # HFEngine: the worker's engine call on its own; same seed, so the same samples and lengths
            torch.manual_seed(seed)
            tokens = sum(len(o.token_ids) for o in self.engine.generate(prompts, [max_tokens] * len(prompts)))
        return tokens, time.perf_counter() - start


def make_actor(cfg: Any, model_path: str) -> Any:
    """One probed worker with the driver's resources, environment and engine settings
    (rl/actors.py create_rollout_workers)."""
    import ray

    from rl.actors import actor_env, rollout_worker_kwargs

    rc = cfg.rollout
    actor = ray.remote(ProbedRolloutWorker).options(
        num_cpus=rc.cpus_per_worker, num_gpus=rc.gpus_per_worker, runtime_env={"env_vars": actor_env(rc.threads)})
    worker = actor.remote(model_path, rc.backend, **rollout_worker_kwargs(cfg, seed=cfg.run.seed))
    ray.get(worker.pid.remote())
    return worker


def measure(worker: Any, requests: list, repeats: int) -> dict[str, Any]:
    import ray

    prompts, seed = [r.prompt_ids for r in requests], requests[0].seed
    runs = []
    for _ in range(repeats + 1):  # the first round warms both paths up (first-call allocations) and is dropped
        start = time.perf_counter()
        rollouts, inside_s = ray.get(worker.timed_generate.remote(requests))
        worker_s = time.perf_counter() - start
        lengths = [len(r.response_ids) for r in rollouts]
        bare_tokens, bare_s = ray.get(worker.bare_generate.remote(prompts, lengths, requests[0].max_new_tokens, seed))
        runs.append({"worker_s": worker_s, "worker_inside_actor_s": inside_s, "worker_tokens": sum(lengths),
                     "bare_s": bare_s, "bare_tokens": bare_tokens})
    timed = runs[1:]
    total = {k: sum(r[k] for r in timed) for k in timed[0]}
    return {"runs": timed, "warmup": runs[0], "worker_tokens_per_s": total["worker_tokens"] / total["worker_s"],
            "bare_tokens_per_s": total["bare_tokens"] / total["bare_s"],
            # median of the per-repeat ratios: one call slowed by other work on the machine does not decide it
            "overhead_pct": 100 * (statistics.median(r["worker_s"] / r["bare_s"] for r in timed) - 1),
            "overhead_pct_of_totals": 100 * (total["worker_s"] / total["bare_s"] - 1),
            "ray_transfer_s_per_call": (total["worker_s"] - total["worker_inside_actor_s"]) / repeats}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = config_parser(__doc__, "rollout settings and model")
    p.add_argument("--backend", choices=("vllm", "hf"), help="rollout backend (default: the config's)")
    p.add_argument("--max-new-tokens", type=int, help="max generated tokens (default: the config's)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per path after a warm-up (default 3)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import ray
    from transformers import AutoTokenizer

    from envs.tasks import load_task
    from rl.config import load_config
    from rl.data import TaskMix
    from rl.round import build_requests
    from rl.models import resolve_model_path

    chosen = {"rollout.backend": args.backend, "rollout.max_new_tokens": args.max_new_tokens}
    cfg = load_config(args.config, config_overrides(args, chosen))
    model_path = resolve_model_path(cfg.model.path)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.tokenizer or model_path)
    tasks = [load_task(t, cfg.run.seed) for t in cfg.data.tasks]
    requests, _, _ = build_requests(0, cfg, TaskMix(tasks, cfg.run.seed), tokenizer)
    if any(r.env is not None for r in requests):
        raise ValueError("rollout_overhead: agent-env tasks run multi-turn episodes; the bare engine has no "
                         "equivalent. Use a single-turn config (configs/tiny.yaml)")

    os.environ.pop("RAY_ADDRESS", None)  # a local cluster of our own
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        worker = make_actor(cfg, model_path)
        result = measure(worker, requests, args.repeats)
    finally:
        ray.shutdown()
    print(f"{cfg.rollout.backend}, {len(requests)} samples x <= {cfg.rollout.max_new_tokens} tokens, "
          f"{args.repeats} repeat(s): RolloutWorker (Ray actor) {result['worker_tokens_per_s']:.1f} tokens/s, "
          f"bare engine {result['bare_tokens_per_s']:.1f} tokens/s, overhead {result['overhead_pct']:+.1f}% "
          f"(Ray transfer {result['ray_transfer_s_per_call']:.3f} s per call)")
    write_json(args.out, {"machine": machine_info(), "backend": cfg.rollout.backend, "model": cfg.model.path,
                          "samples": len(requests), "prompts": cfg.rollout.prompts_per_step,
                          "group_size": cfg.rollout.group_size, "max_new_tokens": cfg.rollout.max_new_tokens,
                          "repeats": args.repeats, **result,
                          "definition": "overhead % = median over repeats of worker seconds / bare engine seconds, "
                                        "- 1; the bare engine generates the worker's response lengths"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
