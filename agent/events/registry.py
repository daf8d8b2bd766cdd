"""Every event type in one place (sinks, schema, discovery and commands read it)."""

from __future__ import annotations

from agent.events.help import HelpCall
from agent.events.types import VoiceCommand, WakeWord

Event = VoiceCommand | HelpCall | WakeWord
EVENT_TYPES: tuple[type[Event], ...] = (VoiceCommand, HelpCall, WakeWord)
