"""What reaches the console: the progress bar, our own log lines and every warning that matters. The
libraries' INFO lines (vLLM, Ray, DeepSpeed, transformers, wandb) and known-harmless warnings go to
RUN/console.log instead, with everything else; `rl train --verbose` (RL_VERBOSE=1) restores them all.

Two mechanisms, because the noise comes from two places:
- the driver: a filter on the console handler (`ConsoleFilter`) and a file handler for the run folder;
- the actors: Ray forwards whatever an actor process writes to its stdout/stderr to the driver's
  console, including C++ and `print` output no logging filter sees. `quiet_actor` (Ray's worker
  setup hook, run first in every actor process) points the process's fds 1 and 2
  at RUN/console.log and gives our own loggers a handler on the original stderr, which Ray still
  forwards: our warnings and errors show, the rest is in the file. A crash's traceback is in the file
  and, through Ray, in the error the driver raises.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

VERBOSE_ENV = "RL_VERBOSE"
"""1: everything on the console, as the libraries print it."""
LOG_ENV = "RL_CONSOLE_LOG"
"""The run folder's console.log, set by the driver for the actors it starts."""
LOG_NAME = "console.log"
OURS = ("rl", "rewards", "envs", "launch", "__main__")
"""Loggers whose INFO lines stay on the console."""
HARMLESS = (
    "Failed to load weights",  # vLLM, at every weight reload: rotary embeddings have no weights
    "is deprecated and will be removed",  # library deprecations we cannot act on
    "TORCH_CUDA_ARCH_LIST is not set",
    "Token authentication is enabled for this Ray cluster",  # Ray, at every start of a local cluster
)
"""Substrings of warnings known to be harmless: to the file only."""
NOISY_LIBRARIES = ("vllm", "DeepSpeed", "deepspeed", "ray", "transformers", "wandb", "datasets", "httpx",
                   "urllib3", "filelock", "torch")


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV) == "1"


class ConsoleFilter(logging.Filter):
    """Our INFO and up; others' WARNING and up; never a known-harmless warning (unless verbose)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if verbose():
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: show it, it is rare and may matter
            return True
        if any(text in message for text in HARMLESS):
            return False
        ours = record.name.split(".")[0] in OURS
        return record.levelno >= (logging.INFO if ours else logging.WARNING)


def setup_console(verbose_flag: bool = False) -> None:
    """The CLI's logging: one console handler with `ConsoleFilter`; library loggers that print on their
    own handlers (vLLM, DeepSpeed) get the filter too; wandb prints through its own switch."""
    if verbose_flag:
        os.environ[VERBOSE_ENV] = "1"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(ConsoleFilter())
    if not verbose():
        os.environ.setdefault("WANDB_SILENT", "true")
        os.environ.setdefault("TRANSFORMERS_VERBOSITY", "warning")
    filter_library_handlers()


def filter_library_handlers() -> None:
    """`ConsoleFilter` on the console handlers that libraries attach to their own loggers (they do it
    when imported, so this runs again once they are)."""
    for name in NOISY_LIBRARIES:
        for handler in logging.getLogger(name).handlers:
            if not isinstance(handler, logging.FileHandler) and not any(
                    isinstance(f, ConsoleFilter) for f in handler.filters):
                handler.addFilter(ConsoleFilter())


def log_to_run_folder(run_dir: Path) -> Path:
    """Everything (all levels, all loggers) also goes to RUN/console.log; actors started from now on
    write there too. Returns the file."""
    path = Path(run_dir) / LOG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("", *NOISY_LIBRARIES):  # "": the root; the others print without propagating
        logger = logging.getLogger(name)
        if not any(getattr(h, "baseFilename", None) == str(path.resolve()) for h in logger.handlers):
            logger.addHandler(handler)
    os.environ[LOG_ENV] = str(path.resolve())
    filter_library_handlers()
    return path


def console_level() -> int:
    """Ray's own driver-side logging level: its INFO lines ("Started a local Ray instance") only when verbose."""
    return logging.INFO if verbose() else logging.WARNING


SETUP_HOOK_ENV = "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"
"""Where a Ray worker looks for its setup hook (a module path) as it starts, before it imports the actor's
class. Ray's public `worker_process_setup_hook` is honoured only in the job-wide runtime_env of
ray.init, which a submitted job already owns; the variable it is turned into works per actor."""


def actor_console_env() -> dict[str, str]:
    """What an actor needs of the console, for its runtime_env's env_vars: the run log and the hook."""
    env = {name: os.environ[name] for name in (VERBOSE_ENV, LOG_ENV) if name in os.environ}
    return env | ({SETUP_HOOK_ENV: "rl.console.quiet_actor"} if LOG_ENV in env else {})


def quiet_actor() -> None:
    """Ray's worker_process_setup_hook: library output to RUN/console.log, our warnings to the console."""
    path = os.environ.get(LOG_ENV)
    if verbose() or not path:
        return
    try:
        log_fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:  # e.g. a node without the run folder's file system: keep everything on the console
        return
    console = os.fdopen(os.dup(2), "w", buffering=1)  # still the file Ray forwards to the driver
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    to_console = logging.StreamHandler(console)
    to_console.setLevel(logging.WARNING)
    to_console.addFilter(ConsoleFilter())
    to_console.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    for name in OURS:
        logging.getLogger(name).addHandler(to_console)
