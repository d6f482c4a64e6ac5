"""Thinking-mode fusion (Qwen3 Technical Report, section 4.3), all in this package:

    tags.py         the think block and the /think, /no_think flags: parse, comply, STOP_THINKING (leaf)
    chat.py         chat rendering in the asked mode, with tools (leaf)
    budget.py       the thinking budget's token rules; sampling a budget per prompt (leaf)
    sft.py          `rl sft`: fusion SFT on mixed-mode chats, on the Learner actors
    fusion_data.py  `rl build-fusion-data`: mixed-mode SFT data by rejection sampling (or arithmetic)
    evals.py        `rl eval-thinking`: ThinkFollow and accuracy vs thinking budget

The task category that trains the soft switch with RL is envs/builtin/thinking.py; the format and
mode-following rewards are rewards/format.py. The leaves import nothing else of the project; the
stages build on the actor and round modules (rl/actors.py, rl/round.py), never on the driver.
"""
