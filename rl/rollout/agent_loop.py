"""Multi-turn agent rollouts: many env episodes driven at once over a batch engine, token-in/token-out.

    rollouts = AgentRollouts(engine, tokenizer).run(requests, weights_version=3)
    # one Rollout per RolloutRequest with `env` set (RolloutWorker.generate routes them here)

An episode: a fresh env (`envs.get_env(request.env)()`) resets from `request.row`; the context starts as
`request.prompt_ids` (the driver rendered env.reset(row) and env.tools with the chat template); then
    model turn: engine.generate(context, remaining budget) -> tokens appended, loss_mask 1, logprobs kept
    env step:   env.step(turn text) -> StepResult; its messages are rendered by the chat template and
                their tokens appended, loss_mask 0, logprob 0.0
until the env says done, `env.max_turns` model turns were taken, or the budget is spent.

Scheduling, in waves: the engines' `generate(prompts, max_tokens)` is a batch call, so every active
episode generates its next turn in one call (vLLM batches them continuously inside it), then all their
env steps run concurrently, each in its own thread with the env's `step_timeout_s`, then the next wave.
This is what verl's and SkyRL's agent loops do on a batch engine; an episode that finishes early just
leaves the later waves. (Submitting a turn the moment its env step returns would need an async engine.)

Tokens are never re-tokenised: the context is the prompt ids + every sampled id + every env id. The
env ids are the chat template's rendering of the new messages as the delta after a fixed one-message
conversation (`ObservationTokens`): whatever closes the model's turn (e.g. "\\n" after <|im_end|>), the
tool/user turns, and the next generation prompt (with the empty think block in non-thinking mode under
thinking.switch=hard; under soft, as the first prompt, without it). A
fixed base, not the real history, because templates re-render earlier assistant turns differently once
later messages follow (Qwen3 drops their thoughts), and those tokens are already fixed as sampled.

Budget: `request.max_new_tokens` bounds all response tokens, model and env ones (so prompt + response
fits the engine's max_model_len and the learner's batch). An observation that would leave no room for a
model token ends the episode ("token_budget"). Thinking budgets do not apply here (load_task refuses).

env_info (JSON-serialisable; also given to rewards as row["env_info"] and written to rollouts/*.jsonl):
    env, turns, tool_calls, tool_errors, reward (sum of the steps' non-None rewards, or None), success,
    stop_reason ("done" | "max_turns" | "token_budget" | "env_error" | "env_timeout"), error (text or
    None), env_s (seconds in this episode's reset and steps), generate_s (seconds of the generation
    waves it took part in), info (the steps' info dicts merged), messages (the transcript after the
    prompt: assistant turns and observations).
An env that raises or hangs ends only its own episode (stop_reason env_error/env_timeout, the first
traceback of each env logged); the rollout of the other episodes and the run go on.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from envs.base import CallOutcome, Env, Message, StepResult, call_all, get_env, run_sync, truncate
from rl.rollout.engines import Engine, EngineOutput
from rl.thinking.chat import render_chat
from rl.types import Rollout, RolloutRequest

log = logging.getLogger("rl")

FINISH_REASONS = {"done": "stop", "token_budget": "length"}
"""stop_reason -> Rollout.finish_reason; the rest (max_turns, env_error, env_timeout) are "env"."""


class ObservationTokens:
    """Token ids of env messages as the chat template renders them after a finished assistant turn."""

    MARK = "<<env-observation-base>>"

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.base = [{"role": "user", "content": self.MARK}]
        self.base_text = render_chat(tokenizer, self.base, thinking=False, add_generation_prompt=False)
        # What closes a turn after its content, e.g. "<|im_end|>\n" in ChatML templates.
        self.turn_end = self.base_text[self.base_text.rindex(self.MARK) + len(self.MARK):]

    def ids(self, messages: list[Message], thinking: bool, last_token: int) -> list[int]:
        """Ids to append after a model turn that ended with `last_token`: the rest of the turn's closing
        text, `messages`, and the next generation prompt in the asked mode."""
        after = render_chat(self.tokenizer, [*self.base, *messages], thinking=thinking)
        if not after.startswith(self.base_text):
            raise ValueError("the chat template does not render a conversation as a prefix of its continuation, "
                             "so env messages cannot be appended token-in/token-out; use a ChatML-style template")
        ended = self.tokenizer.decode([last_token])
        # A turn that ended with the template's end-of-turn token only lacks what follows it ("\n"); one
        # that ended otherwise (another EOS id) gets the whole closing text, masked like env tokens.
        closing = self.turn_end[len(ended):] if ended and self.turn_end.startswith(ended) else self.turn_end
        return list(self.tokenizer.encode(closing + after[len(self.base_text):], add_special_tokens=False))


@dataclass
class Episode:
    """One env episode's running state."""

    request: RolloutRequest
    env: Env | None = None
    ids: list[int] = field(default_factory=list)
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    rewards: list[float] = field(default_factory=list)
    success: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    last_text: str = ""
    stop: str | None = None
    """Why the episode ended (FINISH_REASONS keys and the env failures); None while it runs."""
    error: str | None = None
    env_s: float = 0.0
    generate_s: float = 0.0

    @property
    def remaining(self) -> int:
        return self.request.max_new_tokens - len(self.ids)

    def fail(self, stop: str, error: str) -> None:
        self.stop, self.error = stop, error


class AgentRollouts:
    """Runs agent episodes on `engine` (an rl.rollout.engines.Engine: generate + load_weights)."""

    def __init__(self, engine: Engine, tokenizer: Any):
        self.engine, self.tokenizer = engine, tokenizer
        self.observations = ObservationTokens(tokenizer)
        self._logged: set[str] = set()

    def run(self, requests: list[RolloutRequest], weights_version: int = 0) -> list[Rollout]:
        for r in requests:
            if r.env is None or r.row is None:
                raise ValueError(f"request {r.uid} has env={r.env!r} and row={'set' if r.row else None}; agent "
                                 "rollouts need both (single-turn requests go through RolloutWorker.generate)")
        episodes = [Episode(r) for r in requests]
        self._reset(episodes)
        while active := [e for e in episodes if e.stop is None]:
            self._generate(active)
            self._step([e for e in active if e.stop is None])
        return [self._rollout(e, weights_version) for e in episodes]

    # ---------------------------------------------------------------------------------------- phases
    def _reset(self, episodes: list[Episode]) -> None:
        fns, timeouts, started = [], [], []
        for e in episodes:
            try:
                cls = get_env(e.request.env)
            except Exception as exc:  # noqa: BLE001 - the episode reports it; load_task checked the name
                self._fail(e, "env_error", exc, "", "lookup")
                continue
            fns.append(lambda cls=cls, row=e.request.row: _fresh_env(cls, row))
            timeouts.append(cls.step_timeout_s)
            started.append(e)
        for e, outcome in zip(started, call_all(fns, timeouts)):
            e.env_s += outcome.seconds
            if self._failed(e, outcome, "reset"):
                continue
            e.env = outcome.value

    def _generate(self, active: list[Episode]) -> None:
        t0 = time.perf_counter()
        outs: list[EngineOutput] = self.engine.generate([e.request.prompt_ids + e.ids for e in active],
                                                        [e.remaining for e in active])
        seconds = time.perf_counter() - t0
        for e, out in zip(active, outs):
            e.generate_s += seconds
            e.turns += 1
            e.ids += out.token_ids
            e.mask += [1] * len(out.token_ids)
            e.logprobs += list(out.logprobs)
            e.last_text = self.tokenizer.decode(out.token_ids, skip_special_tokens=True)
            e.messages.append({"role": "assistant", "content": e.last_text})
            if out.finish_reason == "length" or not out.token_ids:  # cut at the budget: no env step
                e.stop = "token_budget"

    def _step(self, stepping: list[Episode]) -> None:
        outcomes = call_all([lambda e=e: e.env.step(e.last_text) for e in stepping],
                            [e.env.step_timeout_s for e in stepping])
        for e, outcome in zip(stepping, outcomes):
            e.env_s += outcome.seconds
            if self._failed(e, outcome, "step"):
                continue
            try:
                self._apply(e, outcome.value)
            except Exception as exc:  # noqa: BLE001 - a malformed StepResult or message ends this episode
                self._fail(e, "env_error", exc, "")

    def _apply(self, e: Episode, result: Any) -> None:
        if not isinstance(result, StepResult):
            raise TypeError(f"step() returned {type(result).__name__}, expected envs.base.StepResult")
        e.tool_calls += result.tool_calls
        e.tool_errors += result.tool_errors
        if result.reward is not None:
            e.rewards.append(float(result.reward))
        if result.success is not None:
            e.success = bool(result.success)
        e.info.update(result.info)
        messages = [_checked(m, e.env.max_observation_chars) for m in result.messages]
        e.messages += messages
        if result.done:
            e.stop = "done"
        elif e.turns >= e.env.max_turns:
            e.stop = "max_turns"
        else:
            ids = self.observations.ids(messages, e.request.thinking or e.request.soft_switch, e.ids[-1])
            if len(ids) >= e.remaining:  # no room left for a single model token after it
                e.stop = "token_budget"
                return
            e.ids += ids
            e.mask += [0] * len(ids)
            e.logprobs += [0.0] * len(ids)

    # --------------------------------------------------------------------------------------- results
    def _failed(self, e: Episode, outcome: CallOutcome, what: str) -> bool:
        if outcome.timed_out:
            timeout = e.env.step_timeout_s if e.env is not None else get_env(e.request.env).step_timeout_s
            e.fail("env_timeout", f"{what} ran past step_timeout_s={timeout:g} s")
            log.warning("env %s: %s of episode %s ran past %g s; the episode ends (reported in env_info)",
                        e.request.env, what, e.request.uid, timeout)
            return True
        if outcome.error is not None:
            self._fail(e, "env_error", outcome.error, outcome.traceback, what)
            return True
        return False

    def _fail(self, e: Episode, stop: str, exc: BaseException, trace: str, what: str = "step") -> None:
        e.fail(stop, f"{what}: {type(exc).__name__}: {exc}"[:2000])
        if e.request.env not in self._logged:  # the first traceback of each env, loudly; later ones counted
            self._logged.add(e.request.env)
            log.warning("env %s failed in %s (the episode ends, the run goes on; later failures are only "
                        "reported in env_info):\n%s", e.request.env, what, trace or repr(exc))

    def _rollout(self, e: Episode, weights_version: int) -> Rollout:
        env_info = {
            "env": e.request.env, "turns": e.turns, "tool_calls": e.tool_calls, "tool_errors": e.tool_errors,
            "reward": sum(e.rewards) if e.rewards else None, "success": e.success, "stop_reason": e.stop,
            "error": e.error, "env_s": e.env_s, "generate_s": e.generate_s, "info": e.info, "messages": e.messages,
        }
        return Rollout(request=e.request, response_ids=e.ids, loss_mask=e.mask, logprobs=e.logprobs,
                       text=e.last_text, finish_reason=FINISH_REASONS.get(e.stop, "env"), env_info=env_info,
                       weights_version=weights_version)


def _fresh_env(cls: type[Env], row: dict[str, Any]) -> Env:
    """A new env, reset from `row` (runs in a call thread: an async reset is awaited there)."""
    env = cls()
    run_sync(env.reset(row))
    return env


def _checked(message: Any, limit: int) -> Message:
    """An observation message with its content cut to `limit` characters; malformed ones raise."""
    if not isinstance(message, dict) or message.get("role") not in ("tool", "user", "system"):
        raise ValueError(f"env observation must be a dict with role 'tool', 'user' or 'system', got {message!r:.200}")
    content = message.get("content")
    if not isinstance(content, str):
        raise ValueError(f"env observation content must be a string, got {type(content).__name__}")
    return {**message, "content": truncate(content, limit)}
