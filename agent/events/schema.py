"""The JSON Schema (draft 2020-12) of event payloads, shipped inside the package."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_FILE = "event.schema.json"


@cache
def event_schema() -> dict[str, Any]:
    """The parsed schema of ``<base>/events`` payloads (see ``event.schema.json``)."""
    text = resources.files("agent.events").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data
