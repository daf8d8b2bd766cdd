"""The one place event types are registered: each is one rule module with a ``build``.

Order matters for speech: a rule that names its intents (help_call) claims them before the
catch-all voice_command sees any utterance. Adding an event type = a rule module, its event
wire class (``agent.events``), its config section, and one line here.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from agent.config.schema import AgentConfig
from agent.rules import help_call, voice_command, wake_word
from agent.rules.base import Parts, Rule, RuleContext

RULE_MODULES: tuple[ModuleType, ...] = (help_call, voice_command, wake_word)

Builder = Callable[[AgentConfig, RuleContext, Parts], Rule | None]


def build_rules(cfg: AgentConfig, ctx: RuleContext, parts: Parts) -> list[Rule]:
    """The rules this config enables (a rule whose parts are not configured is left out)."""
    rules = []
    for module in RULE_MODULES:
        build: Builder = module.build
        rule = build(cfg, ctx, parts)
        if rule is not None:
            rules.append(rule)
    return rules


def claimed_intents(rules: list[Rule]) -> frozenset[str]:
    """Intents some rule owns by name; the catch-all rule gets the others."""
    return frozenset(i for r in rules if r.intents is not None for i in r.intents)
