"""Rule-based reward throughput: samples scored per second, per worker process, on this machine.

    python benchmarks/rewards_throughput.py --out benchmarks/results/rewards_throughput.json
    python benchmarks/rewards_throughput.py --out /tmp/r.json --rewards math --samples 50      # quick look

For each reward (math, code, ifeval, function_call) a fixed mix of realistic rows (correct and wrong
answers) is scored two ways:
- "bare": the function called in a loop in this process (`get_reward(name)(completion, **row)`): the
  cost of the reward itself;
- "runner": through `RewardRunner` with one worker process, which is what one reward worker process
  does in training: per-sample IPC, the timeout bookkeeping, the thinking split. Divide a step's
  samples by this rate (times `reward.procs_per_worker * reward.num_workers`) to estimate time/reward.
A warm-up pass on other samples (imports, the sandbox's isolation probe) runs first and is not timed;
the timed samples all differ (numbers and words vary), so no parse cache serves a repeat.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, write_json  # noqa: E402
from rewards import get_reward  # noqa: E402
from rewards.runner import RewardRunner
from rewards.spec import RewardSpec, ScoreRequest  # noqa: E402

Sample = tuple[str, dict[str, Any]]

ADD_PROMPT = 'def add(a: int, b: int) -> int:\n    """Return a + b."""\n'
WEATHER = [{"name": "get_weather", "description": "Current weather of a city.",
            "parameters": {"type": "dict", "properties": {"city": {"type": "string"},
                                                         "unit": {"type": "string", "enum": ["C", "F"]}},
                           "required": ["city"]}}]


def math_samples(i: int) -> list[Sample]:
    a, b = i + 2, 2 * i + 3  # distinct numbers per cycle, so no parse cache can serve a repeat
    return [
        (f"So the answer is \\boxed{{\\frac{{{a}}}{{{b}}}}}.", {"answer": f"{a / b:.6f}"}),
        (f"The answer is {a * b}.", {"answer": str(a * b)}),
        (f"Adding them up we get $\\boxed{{x \\in ({a}, {b}]}}$", {"answer": f"({a}, {b}]"}),
        (f"Thus \\boxed{{\\{{{a}, {b}, {a + b}\\}}}}", {"answer": f"\\{{{a + b}, {b}, {a}\\}}"}),
        (f"We find \\boxed{{{a}\\sqrt{{2}}}}", {"answer": f"\\sqrt{{{2 * a * a}}}"}),
        (f"The total is \\boxed{{{a + b - 1}}}", {"answer": str(a + b)}),  # wrong
        (f"I think it is {a}/{b + 1}", {"answer": f"\\frac{{{a}}}{{{b}}}"}),  # wrong
        ("No idea.", {"answer": str(a)}),  # no answer at all
    ]


def code_samples(i: int) -> list[Sample]:
    asserts = [f"assert add({i}, 2) == {i + 2}", f"assert add(-1, {i}) == {i - 1}", f"assert add(10, {i}) == {10 + i}"]
    stdio = [{"input": f"{i} 2\n", "output": f"{i + 2}\n"}, {"input": f"5 {i}\n", "output": f"{5 + i}\n"}]
    return [
        ("```python\ndef add(a, b):\n    return a + b\n```", {"tests": asserts, "entry_point": "add"}),
        ("    return a + b\n", {"tests": asserts, "entry_point": "add", "prompt": ADD_PROMPT}),
        ("```python\ndef add(a, b):\n    return a - b\n```", {"tests": asserts, "entry_point": "add"}),  # wrong
        ("```python\nprint(sum(map(int, input().split())))\n```", {"tests": stdio}),
        ("```python\nprint(max(map(int, input().split())) + 1)\n```", {"tests": stdio}),  # wrong
    ]


def ifeval_samples(i: int) -> list[Sample]:
    word = f"item{i}"
    return [
        (f"hello world, all lower case here about {word}", {"instruction_id_list": ["change_case:english_lowercase"],
                                                            "kwargs": [{}], "prompt": "Answer in lowercase."}),
        (f"A reply without commas about {word}. It has two sentences.",
         {"instruction_id_list": ["punctuation:no_comma", "length_constraints:number_sentences"],
          "kwargs": [{}, {"relation": "at least", "num_sentences": 2}], "prompt": "No commas, 2+ sentences."}),
        (f"Title first\n\n<<My Poem {i}>>\nroses are red", {"instruction_id_list": ["detectable_format:title"],
                                                          "kwargs": [{}], "prompt": "Give it a title."}),
        (f"* one {word}\n* two\n* three", {"instruction_id_list": ["detectable_format:number_bullet_lists"],
                                           "kwargs": [{"num_bullets": 3}], "prompt": "Three bullets."}),
        (f"Not JSON at all: {word}", {"instruction_id_list": ["detectable_format:json_format"], "kwargs": [{}],
                                      "prompt": "Reply in JSON."}),  # not followed
        (f"Short {word}.", {"instruction_id_list": ["length_constraints:number_words"],
                            "kwargs": [{"relation": "at least", "num_words": 50}], "prompt": "50+ words."}),  # not followed
    ]


def function_call_samples(i: int) -> list[Sample]:
    city = f"City{i}"
    truth = [{"get_weather": {"city": [city, f"{city.lower()}, france"], "unit": ["C", ""]}}]
    two = truth + [{"get_weather": {"city": ["Rome"], "unit": ["", "C"]}}]
    call = '<tool_call>{{"name": "get_weather", "arguments": {args}}}</tool_call>'
    return [
        (call.format(args=f'{{"city": "{city}"}}'), {"function": WEATHER, "possible_answer": truth}),
        (call.format(args=f'{{"city": "{city}", "unit": "C"}}'), {"function": WEATHER, "possible_answer": truth}),
        (call.format(args='{"city": "Rome"}') + "\n" + call.format(args=f'{{"city": "{city}"}}'),
         {"function": WEATHER, "possible_answer": two}),
        (call.format(args='{"city": "Lyon"}'), {"function": WEATHER, "possible_answer": truth}),  # wrong value
        ('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',
         {"function": WEATHER, "possible_answer": truth}),  # malformed
    ]


SAMPLES = {"math": math_samples, "code": code_samples, "ifeval": ifeval_samples,
           "function_call": function_call_samples}


def make_samples(name: str, n: int, start: int = 0) -> list[Sample]:
    """n samples of the reward's mix; each cycle i >= start has its own numbers / words."""
    out: list[Sample] = []
    i = start
    while len(out) < n:
        out += SAMPLES[name](i)
        i += 1
    return out[:n]


def bare_rate(name: str, samples: list[Sample], warmup: list[Sample]) -> tuple[float, float]:
    """(samples per second, mean score) calling the function in this process."""
    fn = get_reward(name)
    for completion, row in warmup:
        fn(completion, **row)
    start, total = time.perf_counter(), 0.0
    for completion, row in samples:
        result = fn(completion, **row)
        total += result if isinstance(result, float) else result.score
    return len(samples) / (time.perf_counter() - start), total / len(samples)


def runner_rate(name: str, samples: list[Sample], warmup: list[Sample],
                timeout_s: float) -> tuple[float, float, dict[str, float]]:
    """(samples per second, mean score, runner stats) through a RewardRunner with one worker process."""
    requests = [ScoreRequest(completion, {**row, "task": "bench"}) for completion, row in samples]
    with RewardRunner({"bench": [RewardSpec(name)]}, timeout_s=timeout_s, num_procs=1) as runner:
        runner.score([ScoreRequest(c, {**row, "task": "bench"}) for c, row in warmup])  # process start, imports
        runner.stats(reset=True)
        start = time.perf_counter()
        results = runner.score(requests)
        elapsed = time.perf_counter() - start
        stats = runner.stats(reset=True)
    return len(samples) / elapsed, sum(r.reward for r in results) / len(results), stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--rewards", nargs="+", default=list(SAMPLES), choices=list(SAMPLES))
    parser.add_argument("--samples", type=int, default=200, help="samples per reward (code: a quarter of it)")
    parser.add_argument("--timeout-s", type=float, default=30.0, help="runner per-sample timeout")
    args = parser.parse_args(argv)

    machine = machine_info()
    rows = []
    for name in args.rewards:
        n = max(4, args.samples // 4) if name == "code" else args.samples  # code runs sandboxed processes
        samples, warmup = make_samples(name, n), make_samples(name, max(4, n // 10), start=100_000)
        bare, bare_mean = bare_rate(name, samples, warmup)
        runner, runner_mean, stats = runner_rate(name, samples, warmup, args.timeout_s)
        failures = {k: v for k, v in stats.items() if k.startswith(("reward_errors/", "reward_timeouts/"))}
        if failures or abs(bare_mean - runner_mean) > 1e-9:
            raise RuntimeError(f"{name}: the runner disagrees with the bare function ({runner_mean} vs "
                               f"{bare_mean}) or failed {failures}; the benchmark would be meaningless")
        rows.append({"reward": name, "samples": n, "bare_per_s": round(bare, 2),
                     "runner_per_s": round(runner, 2), "overhead_ms": round(1000 * (1 / runner - 1 / bare), 3),
                     "mean_score": round(bare_mean, 4)})

    print(f"{'reward':<14}{'samples':>8}{'bare/s':>10}{'runner/s':>10}{'overhead ms':>13}{'mean score':>12}")
    for r in rows:
        print(f"{r['reward']:<14}{r['samples']:>8}{r['bare_per_s']:>10.1f}{r['runner_per_s']:>10.1f}"
              f"{r['overhead_ms']:>13.2f}{r['mean_score']:>12.3f}")
    # Other processes compete for the cores: machine_info() holds the load average before, this the one after.
    write_json(args.out, {"benchmark": "rewards_throughput", "unit": "samples per second, one process",
                          "machine": machine, "load_avg_after_1_5_15_min": [round(x, 2) for x in os.getloadavg()],
                          "results": rows})
    print(f"load average (1 min) before / after: {machine['load_avg_1_5_15_min'][0]} / {os.getloadavg()[0]:.2f} "
          f"on {os.cpu_count()} cores (above the core count, other work skews these figures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
