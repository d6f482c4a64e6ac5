"""False-premise questions (CounterFactQA style): reject a false premise, answer a true one.

    from rewards.premise import premise_reward
    premise_reward("That premise is false: Einstein's Nobel Prize was in physics.", premise_false=True).score  # 1.0
    premise_reward("He won it for his work on chemistry.", premise_false=True).score                          # 0.0
    premise_reward("It is Paris.", premise_false=False, answer="Paris").score                                 # 1.0

Row fields: `premise_false` (bool: the question presupposes something untrue) and, for true-premise
rows, optional `answer` (text the right answer contains, compared after SQuAD normalisation).

Rejection is detected with phrases such as "false premise", "is not true", "did not", "there is no"
(`REJECTION`). This is a rule, so it is hand-written: no library ships a premise-rejection detector,
and the judge (reward "judge" with the rejection as reference) is the model-based alternative.
Score on a false-premise row: 1.0 if the answer rejects the premise, else 0.0. On a true-premise row:
0.0 if it wrongly rejects; otherwise 1.0, or, with an `answer`, 1.0 when it holds the answer and 0.5
when it does not (it at least accepted a valid question).
"""
from __future__ import annotations

import re
from typing import Any

from rewards.base import RewardResult, reward_spec
from rewards.rag import contains_answer

REJECTION = re.compile(
    r"\b(false premise|premise is (false|wrong|incorrect|mistaken)|(is|was|are|were) (not|n't) (true|correct|accurate)"
    r"|(isn't|wasn't|aren't|weren't) (true|correct|accurate)|not (actually )?true|incorrect|mistaken|misconception"
    r"|(did|does|do|has|have|had|could|can|was|were|is|are) ?(not|n't) (actually )?(ever )?"
    r"(win|won|invent|invented|write|wrote|exist|happen|discover|discovered|land|landed|have|occur|been|live|lived)"
    r"|never (won|invented|wrote|existed|happened|discovered|landed|lived|occurred|was|were|had)"
    r"|there (is|was|are|were) no|no such|doesn't exist|does not exist|didn't exist|did not exist"
    r"|that'?s not (right|correct|true)|actually,)",
    re.IGNORECASE,
)


def rejects_premise(text: str) -> bool:
    return REJECTION.search(text.replace("’", "'")) is not None


@reward_spec(required=("premise_false",))
def premise_reward(completion: str, *, premise_false: bool, answer: str | None = None, **row: Any) -> RewardResult:
    """See the module docstring; details say whether a rejection was found."""
    if not isinstance(premise_false, bool):
        raise TypeError(f"premise reward: row field 'premise_false' must be a bool, got {premise_false!r}")
    rejected = rejects_premise(completion)
    if premise_false:
        return RewardResult(float(rejected), {"rejected": rejected})
    if rejected:
        return RewardResult(0.0, {"rejected": True, "reason": "rejected a true premise"})
    if answer is None:
        return RewardResult(1.0, {"rejected": False})
    correct = contains_answer(completion, [answer])
    return RewardResult(1.0 if correct else 0.5, {"rejected": False, "correct": correct})
