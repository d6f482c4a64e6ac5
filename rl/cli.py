"""The `rl` command.

    rl train CONFIG [--steps N] [--output-dir DIR] [--resume] [--section.field VALUE ...]
    rl score --reward NAME --completion TEXT [--row JSON] [--kwargs JSON]
    rl models [prepare NAME]
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any


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


def cmd_train(args: argparse.Namespace, extra: list[str]) -> int:
    from rl.config import load_config

    overrides = split_overrides(extra)
    if args.steps is not None:
        overrides.append(f"run.steps={args.steps}")
    if args.output_dir is not None:
        overrides.append(f"run.output_dir={args.output_dir}")
    cfg = load_config(args.config, overrides)
    from rl.driver import train

    out = train(cfg, resume=args.resume)
    print(f"run finished: {out}")
    return 0


def cmd_score(args: argparse.Namespace, extra: list[str]) -> int:
    import asyncio
    import inspect

    from rewards import get_reward
    from rewards.base import as_result, wants_raw_completion
    from rl.thinking import split_thinking

    if extra:
        raise SystemExit(f"rl score: unexpected arguments {extra}")
    row: dict[str, Any] = json.loads(args.row)
    fn = get_reward(args.reward, **json.loads(args.kwargs))
    completion = args.completion if wants_raw_completion(fn) else split_thinking(args.completion)[1]
    value = fn(completion, **row)
    if inspect.isawaitable(value):
        value = asyncio.run(value)
    result = as_result(value, args.reward)
    print(json.dumps({"reward": args.reward, "score": result.score, "details": result.details}, indent=2, default=str))
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rl", description="Qwen3-style RL post-training on Ray + DeepSpeed + vLLM")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="run GRPO (extra --section.field VALUE pairs override the config)")
    p.add_argument("config")
    p.add_argument("--steps", type=int)
    p.add_argument("--output-dir")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    p.set_defaults(func=cmd_train)

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
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    from rl.config import ConfigError

    try:
        return args.func(args, extra)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"rl {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
