"""routing_rules: the rules file and the pure decisions made from it.

Imports nothing of ours and does no I/O beyond reading a rules file when asked; see
docs/architecture.md for the contract and docs/rules.md for the file format.
"""

from routing_rules.engine import (
    AgentSnapshot,
    CallerContext,
    DialPlan,
    GoToVoicemail,
    after_dial,
    choose_language,
    decide_dial,
    greeting_period,
    is_open,
    next_open_at,
    queue_for_digit,
    rank_agents,
    ring_seconds,
    ring_target,
    ring_timeout_seconds,
    rings_for,
)
from routing_rules.loading import (
    RulesError,
    RulesInvalid,
    RulesReview,
    RulesWarning,
    check_rules,
    dump_rules,
    load_rules,
    load_rules_file,
    review_rules,
    rules_warnings,
)
from routing_rules.prompts import Prompt, prompt
from routing_rules.schema import Lang, Rules, ring_seconds_for_country

__all__ = [
    "AgentSnapshot", "CallerContext", "DialPlan", "GoToVoicemail", "Lang", "Prompt", "Rules",
    "RulesError", "RulesInvalid", "RulesReview", "RulesWarning", "after_dial", "check_rules",
    "choose_language", "decide_dial", "dump_rules", "greeting_period", "is_open", "load_rules",
    "load_rules_file", "next_open_at", "prompt", "queue_for_digit", "rank_agents", "review_rules",
    "ring_seconds", "ring_seconds_for_country", "ring_target", "ring_timeout_seconds", "rings_for",
    "rules_warnings",
]
