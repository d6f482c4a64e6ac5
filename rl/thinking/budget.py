"""The thinking budget (Qwen3 Technical Report, section 4.3): when a thought reaches the budget without
`</think>`, generation stops, STOP_THINKING is appended and the model answers with what is left.
Pure token rules; the rollout worker (rl/rollout/worker.py) runs the two generation phases.
"""
from __future__ import annotations

import random
from typing import Any, Collection, Sequence

from rl.thinking.tags import STOP_THINKING, THINK_CLOSE, THINK_OPEN

class ThinkingBudget:
    """Token-level thinking-budget rules for one tokenizer (pure: the rollout backend generates).

    The flow a backend runs for a thinking-mode sample with budget B:
      1. generate up to B tokens (phase 1);
      2. if `hit(ids, B)`: continue generating from prompt + `force(ids, B)`; the appended
         `stop_ids` were not sampled by the policy, so mask them out of the loss (like env tokens);
      3. else continue (or stop) as usual: the model closed its thought or ended by itself.
    The budget counts every generated token, including a `<think>` the model writes itself.
    """

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.stop_ids: list[int] = list(tokenizer.encode(STOP_THINKING, add_special_tokens=False))
        """STOP_THINKING tokenised once (it decodes back to exactly STOP_THINKING)."""
        close = tokenizer.convert_tokens_to_ids(THINK_CLOSE)
        # Only trust a single id when it really is `</think>`; otherwise (e.g. SmolLM2, where the tag
        # is several BPE pieces whose split depends on context) look for the tag in the decoded text.
        self.close_id: int | None = close if close is not None and tokenizer.decode([close]) == THINK_CLOSE else None

    def hit(self, ids: Sequence[int], budget: int, eos_ids: Collection[int] = ()) -> bool:
        """True when phase 1 ran the full budget and its first `budget` tokens hold no `</think>` and
        no end-of-sequence id (a generation that ended by itself is not cut)."""
        if budget < 0:
            raise ValueError(f"thinking budget must be >= 0 tokens, got {budget}")
        head = list(ids[:budget])
        if len(head) < budget or any(t in eos_ids for t in head):
            return False
        if self.close_id is not None:
            return self.close_id not in head
        return THINK_CLOSE not in self.tokenizer.decode(head)

    def thinking_tokens(self, ids: Sequence[int], *, prompt_opened_think: bool = False) -> int:
        """Tokens of `ids` that belong to the think block: up to and including the token that completes
        the first `</think>`; all of them when a block was opened (by `ids` or by the prompt) and never
        closed; 0 when there is no block at all."""
        ids = list(ids)
        if self.close_id is not None:
            if self.close_id in ids:
                return ids.index(self.close_id) + 1
        elif THINK_CLOSE in self.tokenizer.decode(ids):
            # The tag spans several BPE pieces here: binary-search the shortest prefix whose decoded
            # text holds it (having the tag is monotone in the prefix length), log2(n) decodes.
            low, high = 1, len(ids)
            while low < high:
                mid = (low + high) // 2
                low, high = (low, mid) if THINK_CLOSE in self.tokenizer.decode(ids[:mid]) else (mid + 1, high)
            return low
        return len(ids) if prompt_opened_think or THINK_OPEN in self.tokenizer.decode(ids) else 0

    def force(self, ids: Sequence[int], budget: int) -> list[int]:
        """The completion ids to continue from once the budget is hit: the first `budget` ids + stop_ids."""
        return list(ids[:budget]) + self.stop_ids


def sample_budget(spec: int | Sequence[int], rng: random.Random) -> int:
    """A thinking budget in tokens: `spec` itself when it is an int, else uniform in [low, high]
    (inclusive) for a (low, high) pair; sampling per prompt teaches answers at many cut points."""
    if isinstance(spec, int) and not isinstance(spec, bool):
        low = high = spec
    elif isinstance(spec, (tuple, list)) and len(spec) == 2 and all(isinstance(v, int) for v in spec):
        low, high = spec
    else:
        raise ValueError(f"thinking budget must be an int or a [low, high] pair of ints, got {spec!r}")
    if not 0 <= low <= high:
        raise ValueError(f"thinking budget range needs 0 <= low <= high, got {spec!r}")
    return low if low == high else rng.randint(low, high)

