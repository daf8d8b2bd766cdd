"""YAML loading with 1-based line:col for every error and no duplicate keys.

ruamel.yaml's round-trip loader keeps each key's position and refuses duplicate keys
(PyYAML silently keeps the last one).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from agent.config.rooms import room_problems
from agent.config.schema import AgentConfig
from agent.errors import ConfigError

_WORD_IN = re.compile(r"word '([^']+)'")
_PHRASE_IN = re.compile(r"phrase '(.+?)' \(intent")
_PUNCT = re.compile(r"[^\w\s']")  # as agent.extractors.speech.normalize_phrase
PASSWORD_ENV = "EDGE_AGENT_MQTT_PASSWORD"
PASSWORD_FILE_ENV = "EDGE_AGENT_MQTT_PASSWORD_FILE"  # systemd: %d/<credential>


def _non_empty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return True  # let the reader name the problem


def _position(doc: Any, loc: Sequence[int | str]) -> tuple[int, int]:
    """Best 1-based (line, col) for a pydantic error location inside the YAML tree."""
    line, col = 1, 1
    node = doc
    for key in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and key in node:
                if lc is not None:
                    line, col = lc.key(key)[0] + 1, lc.key(key)[1] + 1
                node = node[key]
            elif isinstance(node, list) and isinstance(key, int) and 0 <= key < len(node):
                if lc is not None:
                    line, col = lc.item(key)[0] + 1, lc.item(key)[1] + 1
                node = node[key]
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
    return line, col


def _dotted(loc: Sequence[int | str]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "<root>"


def parse_text(text: str, name: str = "<config>") -> AgentConfig:
    """Validate YAML text. Raises ConfigError with one 'name:line:col key: message' per problem."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import MarkedYAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"{mark.line + 1}:{mark.column + 1}" if mark else "1:1"
        problem = " ".join(str(err.problem or err.context or "invalid YAML").split())
        if "duplicate key" in str(err):
            problem = "duplicate key (each key may appear once)"
        raise ConfigError([f"{name}:{where} {problem}"]) from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError([f"{name}:1:1 <root>: the config must be a mapping of sections"])
    plain = _plain(doc)
    rooms = plain.get("rooms")
    if isinstance(rooms, list):
        # Before pydantic, so that each clash is named at its own line.
        device_id = plain.get("device_id", AgentConfig.model_fields["device_id"].default)
        clashes = room_problems(rooms, device_id, plain)
        if clashes:
            lines = []
            for loc, msg in clashes:
                line, col = _position(doc, loc)
                lines.append(f"{name}:{line}:{col} {_dotted(loc)}: {msg}")
            raise ConfigError(lines)
    try:
        cfg = AgentConfig.model_validate(plain)
    except ValidationError as err:
        problems = []
        for e in err.errors(include_url=False, include_input=False):
            line, col = _position(doc, e["loc"])
            problems.append(f"{name}:{line}:{col} {_dotted(e['loc'])}: {e['msg']}")
        raise ConfigError(problems) from None
    problems = _intent_problems(doc, cfg, name)
    if problems:
        raise ConfigError(problems)
    return cfg


def _intent_problems(doc: Any, cfg: AgentConfig, name: str) -> list[str]:
    """Phrases that normalize to nothing or belong to two intents, located in the file."""
    from agent.extractors.speech import normalize_phrase

    owner: dict[str, str] = {}
    problems = []
    for intent, phrases in cfg.intents.items():
        for i, raw in enumerate(phrases):
            phrase = normalize_phrase(raw)
            other = owner.setdefault(phrase, intent)
            why = ""
            if not phrase:
                why = f"phrase {raw!r} has no words"
            elif other != intent:
                why = f"phrase {phrase!r} is also a phrase of intent {other!r}"
            if why:
                line, col = _position(doc, ("intents", intent, i))
                problems.append(f"{name}:{line}:{col} intents.{intent}[{i}]: {why}")
    return problems


def locate_words(problems: list[str], path: Path) -> list[str]:
    """Give vocabulary errors raised later (by a speech engine) the phrase's line:col."""
    try:
        from ruamel.yaml import YAML

        doc = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
        intents = doc.get("intents") if isinstance(doc, dict) else None
    except Exception:  # the file already parsed once; this is best effort
        intents = None
    out = []
    for problem in problems:
        word = _WORD_IN.search(problem)
        whole = _PHRASE_IN.search(problem)
        where = None
        if (word or whole) and isinstance(intents, dict):
            for intent, phrases in intents.items():
                for i, phrase in enumerate(phrases or []):
                    text = " ".join(_PUNCT.sub(" ", str(phrase).lower()).split())
                    if (whole and whole.group(1) == text) or (
                        word and word.group(1) in str(phrase).lower().split()
                    ):
                        line, col = _position(doc, ("intents", intent, i))
                        where = f"{path}:{line}:{col} intents.{intent}[{i}]"
                        break
                if where:
                    break
        out.append(f"{where}: {problem}" if where else f"{path}: {problem}")
    return out


def _plain(node: Any) -> Any:
    """ruamel's Commented* types to plain dict/list, so pydantic sees ordinary values."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def load_config(path: Path) -> AgentConfig:
    """Read, validate and overlay secrets from the environment."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}:1:1 <file>: cannot read config: {err}"]) from None
    cfg = parse_text(text, str(path))
    update: dict[str, object] = {}
    password = os.environ.get(PASSWORD_ENV)
    if password:
        update["password"] = SecretStr(password)
    password_file = os.environ.get(PASSWORD_FILE_ENV)
    # The installer leaves an empty credential for brokers without a password: none then.
    if password_file and cfg.mqtt.password_file is None and _non_empty(Path(password_file)):
        update["password_file"] = Path(password_file)
    if update:
        cfg = cfg.model_copy(update={"mqtt": cfg.mqtt.model_copy(update=update)})
    return cfg
