"""TRL's GRPOTrainer on the same work as one `rl train` run: the TRL side of benchmarks/vs_trl.py.

    python benchmarks/trl_grpo.py --spec SPEC.json --out DIR

vs_trl.py writes SPEC.json (model folder, prompts in our step order, reward components, GRPOConfig
keywords derived from our config) and runs this in its own process, so that each framework starts
clean. This writes DIR/metrics.jsonl with one line per optimizer step under OUR metric names
(`time/generate`, `time/reward`, `time/train`, `time/sync`, `time/step`, `perf/gen_tokens`,
`reward/mean`), so that both sides are summarised by the same code:

    time/step      on_step_begin -> on_step_end of the Trainer (generation happens inside: GRPO
                   generates in `_prepare_inputs` at the first micro-batch of each step)
    time/generate  GRPOTrainer._generate (tokenise prompts, transformers `generate`, decode)
    time/reward    GRPOTrainer._calculate_rewards (our reward functions, in-process)
    time/train     time/step - _prepare_inputs (forward, backward, optimizer step)
    time/sync      0: the trained model is the one that generates; there is no weight transfer
    reward/mean    the weighted sum of the reward components, averaged over the step's samples
                   (what TRL logs as `reward`)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # rl/, rewards/ from the repo, not a stale install

import torch  # noqa: E402

from rewards import get_reward  # noqa: E402
from rewards.base import call_reward  # noqa: E402


class TaskReward:
    """One component of a task's reward (e.g. `math`, weight applied by TRL's `reward_weights`) as a
    TRL reward function: `fn(completions, **dataset_columns) -> list[float | None]`.

    Each sample is scored as our reward workers score it (rewards.base.call_reward): the completion is
    the rendered prompt's response prefix (e.g. an empty think block) + the generated text, thinking is
    removed unless the reward asks for the raw text, and the reward gets the dataset row plus
    `response_tokens` and `max_new_tokens` as keywords. Exceptions propagate: a reward bug must stop the benchmark, not score 0.
    """

    def __init__(self, name: str, kwargs: dict[str, Any], key: str, max_new_tokens: int):
        self.fn = get_reward(name, **kwargs)
        self.max_new_tokens = max_new_tokens
        self.__name__ = key  # TRL names the reward's metrics after it

    def __call__(self, completions: list[str], completion_ids: list[list[int]], row: list[str], prefix: list[str],
                 **_: Any) -> list[float | None]:
        scores = []
        for completion, ids, row_json, pre in zip(completions, completion_ids, row, prefix, strict=True):
            fields = {**json.loads(row_json), "response_tokens": len(ids), "max_new_tokens": self.max_new_tokens}
            scores.append(call_reward(self.fn, self.__name__, pre + completion, fields).score)  # as our workers do
        return scores


def timed_trainer_class() -> type:
    """GRPOTrainer with the phase timers above (a subclass: TRL's own profiling only reports to wandb/mlflow)."""
    from trl import GRPOTrainer

    class TimedGRPOTrainer(GRPOTrainer):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, **kwargs)
            self.phase: Counter[str] = Counter()
            self.step_rewards: list[float] = []

        def _generate(self, prompts: list) -> Any:
            start = time.perf_counter()
            out = super()._generate(prompts)
            self.phase["generate"] += time.perf_counter() - start
            self.phase["gen_tokens"] += sum(len(ids) for ids in out[1])  # completion ids, up to and with EOS
            return out

        def _calculate_rewards(self, inputs: Any, prompts: Any, completions: Any, completion_ids_list: Any) -> Any:
            start = time.perf_counter()
            per_func = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)  # (N, F)
            self.phase["reward"] += time.perf_counter() - start
            weighted = (per_func * self.reward_weights.to(per_func.device).unsqueeze(0)).nansum(dim=1)
            weighted[torch.isnan(per_func).all(dim=1)] = torch.nan  # unscorable rows: left out, as TRL logs it
            self.step_rewards.append(float(torch.nanmean(weighted)))
            return per_func

        def _prepare_inputs(self, generation_batch: Any) -> Any:
            start = time.perf_counter()
            out = super()._prepare_inputs(generation_batch)
            self.phase["prepare"] += time.perf_counter() - start
            return out

    return TimedGRPOTrainer


def step_logger(trainer: Any, path: Path) -> Any:
    """A TrainerCallback that writes one metrics line per optimizer step (names: module docstring)."""
    from transformers import TrainerCallback

    class StepLogger(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            trainer.phase.clear()
            trainer.step_rewards.clear()
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            step_s = time.perf_counter() - self.start
            p = trainer.phase
            if not trainer.step_rewards:
                raise RuntimeError(f"TRL step {state.global_step} generated nothing: the benchmark expects one "
                                   "generation per optimizer step (steps_per_generation = gradient_accumulation_steps)")
            record = {"step": state.global_step, "time/step": step_s, "time/generate": p["generate"],
                      "time/reward": p["reward"], "time/train": step_s - p["prepare"], "time/sync": 0.0,
                      "perf/gen_tokens": float(p["gen_tokens"]),
                      "reward/mean": sum(trainer.step_rewards) / len(trainer.step_rewards)}
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")

    return StepLogger()


VLLM_COLOCATE = {"use_vllm": True, "vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.3,
                 "vllm_max_model_length": 512}
"""GRPOConfig keywords of TRL's strongest generation path: a vLLM engine in the trainer's process."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", required=True, help="JSON written by benchmarks/vs_trl.py")
    parser.add_argument("--out", required=True, help="folder for metrics.jsonl and the trainer's files")
    parser.add_argument("--vllm-colocate", action="store_true",
                        help="generate with TRL's vLLM integration in colocate mode (the strongest TRL variant)")
    args = parser.parse_args(argv)
    spec = json.loads(Path(args.spec).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(spec["threads"])

    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import GRPOConfig

    cuda = torch.cuda.is_available()
    # fp32 on CPU: torch's bf16 matmuls are 50-100x slower there (FINDINGS.md); bf16 on CUDA.
    dtype = "bfloat16" if cuda else "float32"
    config = GRPOConfig(output_dir=str(out / "trainer"), use_cpu=not cuda, bf16=cuda, report_to="none",
                        save_strategy="no", logging_steps=1, log_completions=False, dataloader_num_workers=0,
                        model_init_kwargs={"dtype": dtype}, **spec["grpo_config"],
                        **(VLLM_COLOCATE if args.vllm_colocate else {}))
    tokenizer = AutoTokenizer.from_pretrained(spec["model_path"])
    limit = spec["grpo_config"]["max_completion_length"]
    rewards = [TaskReward(r["name"], r["kwargs"], r["key"], limit) for r in spec["rewards"]]
    trainer = timed_trainer_class()(model=spec["model_path"], reward_funcs=rewards, args=config,
                                    train_dataset=Dataset.from_list(spec["prompts"]), processing_class=tokenizer)
    (out / "metrics.jsonl").unlink(missing_ok=True)
    trainer.add_callback(step_logger(trainer, out / "metrics.jsonl"))
    trainer.train()
    print(f"trl run finished: {out} ({os.getpid()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
