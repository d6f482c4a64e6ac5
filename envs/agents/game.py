"""guess_number: a text game with a verifiable goal. The model guesses a secret integer; the env answers
"higher" or "lower" as a user message; reward 1.0 when it finds the number within the allowed guesses.

    task `agent_game` (env `guess_number`): "I am thinking of an integer from 1 to 20 ... 5 guesses."
    model: "50"  -> env: "Lower. 4 guesses left."  -> model: "25" -> ... -> env: "Correct!" (reward 1.0)

A move is the last integer in the turn's answer part. A turn with no integer, or one outside the range,
costs a guess and gets a reminder of the rules (counted in info["invalid_moves"]). Binary search
always wins when guesses >= ceil(log2(width + 1)), so the goal is reachable by a good policy.
Options: `width` (how many numbers the range holds, default 20; the range starts at a random number
from 1 to 100, so rows are many and distinct), `guesses` (default 5).
"""
from __future__ import annotations

import random
import re
from typing import Any

from envs.base import Env, StepResult
from envs.tasks import Row, TaskSpec
from rewards.spec import RewardSpec
from rl.thinking.tags import split_thinking

PROMPT = ("Let's play a game. I am thinking of an integer from {low} to {high}. Guess it: reply with just one "
          "number. After each guess I will tell you whether my number is higher or lower. You have {guesses} "
          "guesses.")
_INTEGER = re.compile(r"-?\d+")


class GuessNumberEnv(Env):
    max_turns = 5

    def reset(self, row: dict[str, Any]) -> list[dict[str, Any]]:
        self.secret, self.low, self.high = int(row["secret"]), int(row["low"]), int(row["high"])
        self.max_turns = int(row["guesses"])
        self.guesses, self.invalid = 0, 0
        return [{"role": "user", "content": PROMPT.format(low=self.low, high=self.high, guesses=self.max_turns)}]

    def step(self, assistant_text: str) -> StepResult:
        self.guesses += 1
        left = self.max_turns - self.guesses
        _, answer = split_thinking(assistant_text)
        numbers = _INTEGER.findall(answer)
        guess = int(numbers[-1]) if numbers else None
        info = {"guesses": self.guesses, "invalid_moves": self.invalid}
        if guess == self.secret:
            return StepResult([{"role": "user", "content": "Correct!"}], done=True, reward=1.0, success=True, info=info)
        if left <= 0:
            return StepResult([{"role": "user", "content": f"Out of guesses: the number was {self.secret}."}],
                              done=True, reward=0.0, success=False, info=info)
        if guess is None or not self.low <= guess <= self.high:
            self.invalid += 1
            info["invalid_moves"] = self.invalid
            text = f"Reply with one integer from {self.low} to {self.high}. {left} guesses left."
        else:
            text = f"{'Higher' if self.secret > guess else 'Lower'}. {left} guesses left."
        return StepResult([{"role": "user", "content": text}], done=False, info=info)


def generate(size: int, seed: int, options: dict[str, Any]) -> list[Row]:
    unknown = set(options) - {"width", "guesses"}
    width, guesses = int(options.get("width", 20)), int(options.get("guesses", 5))
    if unknown or width < 2 or guesses < 1:
        raise ValueError(f"agent_game options: width >= 2, guesses >= 1 (got {options})")
    rng = random.Random(f"agent-game-{seed}")
    rows = []
    for _ in range(size):
        low = rng.randint(1, 100)
        row = {"secret": rng.randint(low, low + width - 1), "low": low, "high": low + width - 1, "guesses": guesses}
        rows.append({**row, "prompt": PROMPT.format(low=low, high=row["high"], guesses=guesses)})
    return rows


TASK = TaskSpec(
    name="agent_game",
    description="guess-the-number with higher/lower feedback over several turns; reward from the game",
    generate=generate,
    rewards=[RewardSpec("env", 1.0)],
    source="procedural",
    env="guess_number",
)
