"""The `rl` command.

    rl train CONFIG [--steps N] [--output-dir DIR] [--resume [auto]] [--section.field VALUE ...]
    rl submit CONFIG --address http://HEAD:8265 [--wait] [--steps N] [--output-dir DIR] [overrides]  (launch/submit.py)
    rl jobs list|status|logs|stop [JOB_ID] --address http://HEAD:8265 [--follow]         (launch/submit.py)
    rl score --reward NAME --completion TEXT [--row JSON] [--kwargs JSON]
    rl models [prepare NAME]
    rl tasks [--json] | rl tasks show NAME [--json] [--seed N] [--model DIR] (envs/catalogue.py)
    rl report RUN_DIR [--out DIR]                                        (rl/report.py)
    rl sft CONFIG [--output-dir DIR] [--resume] [--section.field VALUE ...]   (fusion SFT, rl/thinking/sft.py)
    rl build-fusion-data CONFIG --out FILE.jsonl [--prompts N] [--threshold T]   (rl/thinking/fusion_data.py)
    rl build-fusion-data --arithmetic N --out FILE.jsonl
    rl eval-thinking CONFIG --out DIR [--model DIR] [--budgets 0,16,32]  (rl/thinking/evals.py)
    rl distill CONFIG [--teacher DIR] [rl train's options]   (on-policy distillation, rl/teacher.py)
    rl distill CONFIG --off-policy --sft-config SFT.yaml [--prompts 64] [--min-reward 1] [--teacher DIR]   (teacher answers -> SFT)
    rl filter CONFIG --out FILE.jsonl [--k 8] [--band 0.1 0.9] [--model DIR] [--task NAME]  (rl/query_filter.py)
    rl build-agent-data CONFIG --out FILE.jsonl [--episodes 64]   (agent cold-start SFT data, rl/agent_data.py)
    rl recipe RECIPE [--output-dir DIR] [--smoke] [--reevaluate] [--field VALUE ...]  (every Qwen3 stage, rl/recipe.py)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rl.console import setup_console


def split_overrides(extra: list[str]) -> list[str]:
    """`--a.b value` / `--a.b=value` / `a.b=value` -> ["a.b=value", ...]."""
    overrides, i = [], 0
    while i < len(extra):
        item = extra[i]
        if not item.startswith("--") and "=" not in item:
            raise SystemExit(f"rl: unexpected argument {item!r}; overrides look like --section.field VALUE")
        key = item[2:] if item.startswith("--") else item
        if "=" in key:
            overrides.append(key)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise SystemExit(f"rl: override {item} needs a value")
            overrides.append(f"{key}={extra[i + 1]}")
            i += 2
    return overrides


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    """The shortcuts `rl train` and `rl submit` share; each is an override of the config."""
    p.add_argument("--steps", type=int, help="run.steps")
    p.add_argument("--output-dir", help="run.output_dir")
    p.add_argument("--algo", help="a policy-loss preset: grpo, dapo, dr_grpo, gspo (configs/algos/) or a YAML file")


def run_overrides(args: argparse.Namespace, extra: list[str]) -> list[str]:
    """The overrides of `add_run_arguments` plus `--section.field VALUE` pairs; explicit pairs win over --algo."""
    overrides = algo_overrides(args.algo) + split_overrides(extra)
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    if args.output_dir is not None:
        overrides.append(f"run.output_dir={args.output_dir}")
    return overrides


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    """`rl train`, and `rl distill`: the same run with a teacher (on-policy distillation, rl/teacher.py)."""
    from rl.config import ConfigError, load_config

    distill = args.command == "distill"
    teacher = [f"distill.teacher={args.teacher}"] if distill and args.teacher else []
    cfg = load_config(args.config, run_overrides(args, extra) + teacher)
    if distill and not cfg.distill.teacher:
        raise ConfigError(f"rl distill {args.config}: no teacher; pass --teacher MODEL_OR_CHECKPOINT or set "
                          "distill.teacher in the config")
    if distill and args.off_policy:
        return distill_off_policy(args, cfg, run_overrides(args, extra))
    from rl.driver import train

    train(cfg, resume=resume_wanted(args.resume, cfg.output_dir))  # prints the closing summary
    return 0


def distill_off_policy(args: argparse.Namespace, cfg: Any, overrides: list[str]) -> int:
    """`rl distill --off-policy`: the teacher's best answers to the config's tasks (reward >= --min-reward),
    then SFT of the config's model on them into run.output_dir (rl/recipe_stages.py `off_policy_distill`)."""
    from rl.config import ConfigError, SFTConfig, load_config
    from rl.recipe_stages import off_policy_distill

    if not args.sft_config:
        raise ConfigError("rl distill --off-policy: give --sft-config FILE (the SFT settings: configs/sft_tiny.yaml)")
    out = cfg.output_dir
    sft_cfg = load_config(args.sft_config, [f"model.path={cfg.model.path}", f"run.output_dir={out}",
                                            f"run.seed={cfg.run.seed}", f"sft.data={out / 'teacher_chats.jsonl'}"],
                          kind=SFTConfig)
    teacher_cfg = load_config(args.config, overrides + [f"model.path={cfg.distill.teacher}", "distill.teacher=null"])
    model, kept = off_policy_distill(teacher_cfg, sft_cfg, args.prompts, args.min_reward)
    print(f"off-policy distillation: {kept} teacher answers kept ({out / 'teacher_chats.jsonl'}); "
          + (f"student trained: {model}\nnext, on-policy: rl distill {args.config} --model.path {model}"
             if model else "too few for one SFT batch: raise --prompts"))
    return 0


ALGOS = Path(__file__).resolve().parents[1] / "configs" / "algos"


def algo_overrides(algo: str | None) -> list[str]:
    """The `grpo` section of a preset in configs/algos/ (a name) or a YAML file (a path), as overrides."""
    from rl.config_io import ConfigError, preset_overrides

    if algo is None:
        return []
    path = Path(algo) if algo.endswith((".yaml", ".yml")) else ALGOS / f"{algo}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in ALGOS.glob("*.yaml"))
        raise ConfigError(f"--algo {algo}: no preset {path}; choose one of {names} or give a YAML file")
    return preset_overrides(path, ("grpo",))


def resume_wanted(flag: str | None, out_dir: Path) -> bool:
    """`--resume`: continue from the last checkpoint (warns when there is none). `--resume auto` (what
    `rl submit` passes): the same when the run folder holds a run, else a fresh start without a warning,
    so a resubmitted job continues and a first submission just starts."""
    if flag == "auto":
        from rl import checkpoint

        return checkpoint.latest_checkpoint(out_dir) is not None or (out_dir / "metrics.jsonl").exists()
    return flag is not None


def cmd_submit(args: argparse.Namespace, extra: list[str]) -> int:
    from launch.submit import cmd_submit as submit

    return submit(args, run_overrides(args, extra))


def cmd_jobs(args: argparse.Namespace, extra: list[str]) -> int:
    from launch.submit import cmd_jobs as jobs

    return jobs(args, extra)


def cmd_score(args: argparse.Namespace, extra: list[str]) -> int:
    from rewards import get_reward
    from rewards.base import call_reward

    if extra:
        raise SystemExit(f"rl score: unexpected arguments {extra}")
    row, kwargs = _json_object(args.row, "--row"), _json_object(args.kwargs, "--kwargs")
    try:
        fn = get_reward(args.reward, **kwargs)
    except (ValueError, FileNotFoundError) as exc:  # a failed lookup: the message lists the accepted forms
        print(f"rl score: error: {exc}", file=sys.stderr)
        return 2
    result = call_reward(fn, args.reward, args.completion, row)  # as the reward workers call it
    print(json.dumps({"reward": args.reward, "score": result.score, "details": result.details}, indent=2, default=str))
    return 0


def _json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SystemExit(f"rl score: {flag} is not valid JSON ({exc}); e.g. {flag} '{{\"answer\": \"3/4\"}}'")
    if not isinstance(value, dict):
        raise SystemExit(f"rl score: {flag} must be a JSON object of fields, got {type(value).__name__}")
    return value


def cmd_models(args: argparse.Namespace, extra: list[str]) -> int:
    from rl.models import PACKAGED_MODELS, resolve_model_path

    if args.action == "prepare":
        if not args.name:
            raise SystemExit(f"rl models prepare NAME: choose one of {sorted(PACKAGED_MODELS)}")
        print(resolve_model_path(f"packaged:{args.name}"))
        return 0
    for name, (_, about) in PACKAGED_MODELS.items():
        print(f"packaged:{name:28s} {about}")
    return 0


def cmd_tasks(args: argparse.Namespace, extra: list[str]) -> int:
    from envs.catalogue import run

    if extra:
        raise SystemExit(f"rl tasks: unexpected arguments {extra}")
    print(run(args.action, args.name, args.json, seed=args.seed, model=args.model))
    return 0


def cmd_report(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from rl.report import write_report

    if extra:
        raise SystemExit(f"rl report: unexpected arguments {extra}")
    html, png = write_report(Path(args.run_dir), Path(args.out) if args.out else None)
    print(f"wrote {png}\nwrote {html}")
    return 0


def cmd_sft(args: argparse.Namespace, extra: list[str]) -> int:
    from rl.config import SFTConfig, load_config
    from rl.thinking.sft import sft

    overrides = split_overrides(extra)
    if args.output_dir is not None:
        overrides.append(f"run.output_dir={args.output_dir}")
    out = sft(load_config(args.config, overrides, kind=SFTConfig), resume=args.resume)
    print(f"sft finished: {out}")
    return 0


def cmd_build_fusion_data(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from rl.thinking.fusion_data import arithmetic_fusion_rows, build_fusion_data, write_rows

    if (args.config is None) == (args.arithmetic is None):
        raise SystemExit("rl build-fusion-data: give a CONFIG (rejection sampling) or --arithmetic N, not both")
    if args.arithmetic is not None:
        if extra:
            raise SystemExit(f"rl build-fusion-data --arithmetic: unexpected arguments {extra}")
        write_rows(arithmetic_fusion_rows(args.arithmetic, args.seed), Path(args.out))
        print(f"wrote {args.arithmetic} rows to {args.out}")
        return 0
    from rl.config import load_config

    stats = build_fusion_data(load_config(args.config, split_overrides(extra)), Path(args.out), prompts=args.prompts,
                              threshold=args.threshold, no_think_threshold=args.no_think_threshold,
                              per_prompt=args.per_prompt)
    print(json.dumps({"out": args.out, **stats.as_dict()}, indent=2))
    return 0


def cmd_filter(args: argparse.Namespace, extra: list[str]) -> int:
    import yaml

    from rl.config import load_config
    from rl.query_filter import filter_queries

    stats = filter_queries(load_config(args.config, split_overrides(extra)), Path(args.out), task=args.task, k=args.k,
                           band=(args.band[0], args.band[1]), max_queries=args.max_queries, model=args.model)
    print(f"{stats['task']}: kept {stats['kept']} of {stats['queries']} queries (pass rate in "
          f"[{stats['band'][0]}, {stats['band'][1]}] over k={stats['k']}); too easy {stats['too_easy']}, "
          f"too hard {stats['too_hard']}; pass counts {stats['pass_histogram']}")
    print(f"wrote {args.out} and {args.out}.stats.json; train on it with this data.tasks entry:")
    print(yaml.safe_dump([stats["task_entry"]], sort_keys=False, width=120).rstrip())
    return 0


def cmd_build_agent_data(args: argparse.Namespace, extra: list[str]) -> int:
    from rl.agent_data import build_agent_data
    from rl.config import load_config

    counts = build_agent_data(load_config(args.config, split_overrides(extra)), Path(args.out), args.episodes)
    for task, c in counts.items():
        print(f"{task}: kept {c['kept']} of {c['played']} scripted episodes")
    print(f"wrote {args.out}; train on it with `rl sft` (sft.data: {args.out})")
    return 0


def cmd_recipe(args: argparse.Namespace, extra: list[str]) -> int:
    from rl.recipe import Recipe
    from rl.recipe_config import load_recipe

    overrides = split_overrides(extra) + ([f"output_dir={args.output_dir}"] if args.output_dir else [])
    cfg = load_recipe(args.config, overrides)
    recipe = Recipe(cfg, smoke=args.smoke)
    state = recipe.reevaluate() if args.reevaluate else recipe.run()
    print((cfg.out / "recipe.md").read_text())
    print(f"wrote {cfg.out}/recipe.json, recipe.md, recipe.png ({len(state['rows'])} rows)")
    return 0


def cmd_eval_thinking(args: argparse.Namespace, extra: list[str]) -> int:
    from pathlib import Path

    from rl.config import load_config
    from rl.thinking.evals import evaluate_thinking

    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    results = evaluate_thinking(load_config(args.config, split_overrides(extra)), Path(args.out), model=args.model,
                                dialogs=args.dialogs, turns=args.turns, budgets=budgets, problems=args.problems,
                                answer_tokens=args.answer_tokens, success=args.success)
    follow = results["think_follow"]
    print(f"ThinkFollow: {follow['score']:.3f} of {follow['turns']} turns (last turn {follow['last_turn']:.3f})")
    for point in results["budget_accuracy"]:
        print(f"budget {point['budget']}: accuracy {point['accuracy']:.3f} (budget hit {point['budget_hit_rate']:.2f})")
    print(f"non-thinking: accuracy {results['no_think_accuracy']['accuracy']:.3f}; written to {args.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rl", description="Qwen3-style RL post-training on Ray + DeepSpeed + vLLM")
    sub = parser.add_subparsers(dest="command", required=True)

    add_train_arguments(sub.add_parser("train", help="run GRPO (extra --section.field VALUE pairs override the config)"))
    p = sub.add_parser("distill", help="on-policy distillation: rl train with a teacher scoring every sampled token")
    add_train_arguments(p)
    p.add_argument("--teacher", help="distill.teacher: the teacher model or checkpoint (same tokenizer as the student)")
    p.add_argument("--off-policy", action="store_true",
                   help="instead: SFT of the model on the teacher's correct answers (needs --sft-config)")
    p.add_argument("--sft-config", help="--off-policy: the SFT config (learner and sft sections)")
    p.add_argument("--prompts", type=int, default=64, help="--off-policy: prompts the teacher answers (default 64)")
    p.add_argument("--min-reward", type=float, default=1.0, help="--off-policy: keep the teacher's best response to "
                   "a prompt when its reward reaches this (default 1.0: correct answers only; 0: every prompt)")

    from launch.submit import add_jobs_args, add_submit_args

    p = sub.add_parser("submit", help="submit `rl train` to a Ray cluster as a Ray job (docs/cluster.md)")
    add_submit_args(p)
    add_run_arguments(p)
    p.set_defaults(func=cmd_submit)

    p = sub.add_parser("jobs", help="list Ray jobs, or show the status / logs of one, or stop it")
    add_jobs_args(p)
    p.set_defaults(func=cmd_jobs)

    p = sub.add_parser("score", help="score one completion with a reward and print the details")
    p.add_argument("--reward", required=True, help="built-in name or pkg.module:fn / path/file.py:fn")
    p.add_argument("--completion", required=True)
    p.add_argument("--row", default="{}", help="dataset fields as JSON, e.g. '{\"answer\": \"3/4\"}'")
    p.add_argument("--kwargs", default="{}", help="reward keyword arguments as JSON")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("models", help="list packaged models, or `prepare NAME` to convert one now")
    p.add_argument("action", nargs="?", choices=["list", "prepare"], default="list")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("tasks", help="list the built-in task categories, or `show NAME` for a sample and its reward")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("name", nargs="?")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--seed", type=int, default=0, help="seed of the sample rows (show)")
    p.add_argument("--model", help="show: load this judge / reward model (folder or packaged:NAME) for model rewards")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("report", help="write report.png + report.html (per-task curves, eval table) for a run")
    p.add_argument("run_dir")
    p.add_argument("--out", help="folder for the report (default: the run folder)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("sft", help="fusion SFT: cross-entropy on chat JSONL through the DeepSpeed learner")
    p.add_argument("config")
    p.add_argument("--output-dir")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.set_defaults(func=cmd_sft)

    p = sub.add_parser("build-fusion-data", help="SFT chats by rejection sampling (or procedural arithmetic)")
    p.add_argument("config", nargs="?", help="a GRPO config: its model, tasks, rewards and rollout settings")
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--prompts", type=int, default=64, help="prompts to roll out (whole steps of prompts_per_step)")
    p.add_argument("--threshold", type=float, default=1.0, help="keep a thinking sample when its reward >= this")
    p.add_argument("--no-think-threshold", type=float, help="also filter non-thinking samples by reward")
    p.add_argument("--per-prompt", type=int, default=1, help="kept samples per prompt at most")
    p.add_argument("--arithmetic", type=int, help="instead: write N procedural mixed-mode arithmetic chats")
    p.add_argument("--seed", type=int, default=0, help="seed of --arithmetic")
    p.set_defaults(func=cmd_build_fusion_data)

    add_eval_thinking_parser(sub)

    add_filter_parser(sub)
    add_recipe_parsers(sub)
    return parser


def add_recipe_parsers(sub: Any) -> None:
    """`rl build-agent-data` and `rl recipe`."""
    p = sub.add_parser("build-agent-data", help="agent cold-start SFT data: scripted episodes of the agent envs")
    p.add_argument("config", help="a GRPO config whose data.tasks hold agent tasks (e.g. configs/agent_tiny.yaml)")
    p.add_argument("--out", required=True, help="JSONL file to write")
    p.add_argument("--episodes", type=int, default=64, help="train rows played per agent task (default 64)")
    p.set_defaults(func=cmd_build_agent_data)

    p = sub.add_parser("recipe", help="the Qwen3 recipe: cold start, reasoning RL, fusion, general RL, distillation")
    p.add_argument("config", help="a recipe YAML (configs/recipe_tiny.yaml)")
    p.add_argument("--output-dir", help="output_dir: the recipe folder (a killed recipe resumes there)")
    p.add_argument("--smoke", action="store_true", help="every stage one or two steps, the evaluation on a few prompts")
    p.add_argument("--reevaluate", action="store_true", help="run the evaluation suite again on every finished stage")
    p.set_defaults(func=cmd_recipe)


def add_eval_thinking_parser(sub: Any) -> None:
    p = sub.add_parser("eval-thinking", help="ThinkFollow score and accuracy vs thinking budget (plotted)")
    p.add_argument("config")
    p.add_argument("--out", required=True, help="folder for results.json and budget_accuracy.png")
    p.add_argument("--model", help="model folder to evaluate (default: the config's model.path)")
    p.add_argument("--dialogs", type=int, default=16)
    p.add_argument("--turns", type=int, default=3)
    p.add_argument("--budgets", default="0,16,32,64", help="comma-separated thinking budgets in tokens")
    p.add_argument("--problems", type=int, default=32, help="questions from the config's first task")
    p.add_argument("--answer-tokens", type=int, default=32, help="tokens left for the answer after the stop text")
    p.add_argument("--success", type=float, default=1.0, help="a reward >= this counts as correct")
    p.set_defaults(func=cmd_eval_thinking)


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """What `rl train` and `rl distill` take."""
    p.add_argument("config")
    add_run_arguments(p)
    p.add_argument("--verbose", action="store_true",
                   help="print the libraries' INFO lines and known-harmless warnings too (else in RUN/console.log)")
    p.add_argument("--resume", nargs="?", const="always", choices=["always", "auto"], metavar="auto",
                   help="continue from the run folder's last checkpoint; `--resume auto`: only if the folder "
                        "holds a run, else start fresh (the default of `rl submit`)")
    p.set_defaults(func=cmd_train)


def add_filter_parser(sub: Any) -> None:
    p = sub.add_parser("filter", help="keep the queries the model solves sometimes but not always (k samples each)")
    p.add_argument("config", help="a GRPO config: its model, task, rewards and rollout settings")
    p.add_argument("--out", required=True, help="JSONL task file of the kept rows (with their pass rates)")
    p.add_argument("--k", type=int, default=8, help="samples per query (default 8)")
    p.add_argument("--band", type=float, nargs=2, default=[0.1, 0.9], metavar=("LOW", "HIGH"),
                   help="keep a query whose pass rate is within [LOW, HIGH] (default 0.1 0.9)")
    p.add_argument("--model", help="model or checkpoint folder to sample with (default: the config's model.path)")
    p.add_argument("--task", help="the task to filter when the config has several")
    p.add_argument("--max-queries", type=int, help="filter only the first N train rows (default: all)")
    p.set_defaults(func=cmd_filter)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    setup_console(getattr(args, "verbose", False))
    try:
        from rl.config import ConfigError

        try:
            return args.func(args, extra)
        except (ConfigError, FileNotFoundError) as exc:
            print(f"rl {args.command}: error: {exc}", file=sys.stderr)
            return 2
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("rl", "rewards", "envs", "launch"):
            raise  # our own bug, not the environment
        # E.g. a Ray job started with the wrong interpreter: say which one, not only "No module named 'torch'".
        print(f"rl {args.command}: error: this Python ({sys.executable}) lacks {exc.name!r}, which the project "
              "needs: run rl with the interpreter it was installed into (`bash launch/setup.sh` makes .venv; on "
              "a cluster, start Ray with that environment's `ray`, e.g. .venv/bin/ray start)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
