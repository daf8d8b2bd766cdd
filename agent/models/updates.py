"""Model updates over MQTT, then a restart, a health window, and commit or roll back.

``<base>/set/model_update`` takes a JSON object (at most ``MAX_REQUEST`` bytes)::

    {"url": "https://…/speech_command_int8.tar", "sha256": "<64 hex>",
     "name": "speech_command_int8", "version": "1.1.0", "summary": "…", "install": true}

``url`` and ``sha256`` are required; ``install: false`` only announces the update (Home
Assistant then shows it; its install button publishes ``install`` to
``<base>/set/model_update_install``). One update runs at a time, on its own thread:
download (``agent.models.download``) → unpack → ``ModelStore.install`` with the trust store
(signature, hashes, release, expiry, agent version, canary) → a *pending* mark → the agent
restarts to load it. Progress is the retained JSON on ``<base>/state/model_update``; a
refusal is also answered on ``<base>/error`` like any command.

After the restart, ``ModelStore.start_attempt`` counts starts with the update pending; after
``models.max_failed_starts`` starts that did not stay healthy for ``models.health_window_s``
the update is rolled back before any model loads. A start that stays healthy commits it.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.config.runtimes import RuntimesConfig
from agent.errors import EdgeAgentError
from agent.models.bundle import BundleRejected
from agent.models.store import ModelStore

_LOGGER = logging.getLogger(__name__)

KEY = "model_update"
INSTALL_KEY = "model_update_install"
MAX_REQUEST = 4096
_SHA = re.compile(r"^[0-9a-fA-F]{64}$")

PublishFn = Callable[[str, str | bytes, int, bool], None]


class BadRequest(ValueError):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class UpdateRequest:
    url: str
    sha256: str
    name: str = ""
    version: str = ""
    summary: str = ""
    install: bool = True
    path: Path | None = None  # a bundle folder or .tar on this box (the drop folder)
    on_done: Callable[[bool, str], None] | None = field(default=None, compare=False)


def parse_request(raw: bytes) -> UpdateRequest:
    if len(raw) > MAX_REQUEST:
        raise BadRequest("too_large", f"payload over {MAX_REQUEST} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("not_json", "expected a JSON object") from None
    if not isinstance(data, dict):
        raise BadRequest("not_json", "expected a JSON object")
    url, sha = data.get("url"), data.get("sha256")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise BadRequest("bad_url", "url must be an http(s) URL")
    if not isinstance(sha, str) or not _SHA.match(sha):
        raise BadRequest("bad_sha256", "sha256 must be 64 hex digits")
    text = {k: data.get(k, "") for k in ("name", "version", "summary")}
    if not all(isinstance(v, str) and len(v) <= 500 for v in text.values()):
        raise BadRequest("wrong_type", "name, version and summary must be short strings")
    install = data.get("install", True)
    if not isinstance(install, bool):
        raise BadRequest("wrong_type", "install must be true or false")
    return UpdateRequest(url, sha.lower(), install=install, **text)


def _report(req: UpdateRequest, ok: bool, message: str) -> None:
    """Tell the request's source how it ended; a source that cannot take note (the drop
    folder unable to move the entry) never turns an installed update into a failed one."""
    if req.on_done is None:
        return
    try:
        req.on_done(ok, message)
    except OSError as err:
        _LOGGER.warning("cannot record how the update ended (%s): %s", message, err)


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ModelUpdater:
    """Receives update requests on MQTT and runs at most one at a time."""

    def __init__(
        self,
        store: ModelStore,
        trusted: Sequence[bytes],
        base_topic: str,
        publish: PublishFn,
        on_installed: Callable[[str], None],
        *,
        max_bytes: int = 200_000_000,
        stall_s: float = 30.0,
        model: str = "",
        runtimes: RuntimesConfig | None = None,
    ) -> None:
        self._store = store
        self._trusted = list(trusted)
        self.base = base_topic
        self._publish = publish
        self._on_installed = on_installed
        self._max_bytes = max_bytes
        self._stall_s = stall_s
        self._runtimes = runtimes
        self._busy = threading.Lock()
        self._announced: UpdateRequest | None = None
        self._thread: threading.Thread | None = None
        self.state: dict[str, Any] = {"state": "idle"}
        self._track(model)
        if store.pending() is not None:
            self.state["state"] = "checking"  # the health window of a fresh update is running

    def _track(self, name: str) -> None:
        """Report ``name``'s installed version (Home Assistant's update entity shows it)."""
        if not name:
            return
        try:
            version = self._store.manifest(name).version
        except EdgeAgentError:
            version = ""
        self.state.update(name=name, installed_version=version)
        self.state.setdefault("latest_version", version)
        if self.state.get("latest_version") in ("", None):
            self.state["latest_version"] = version

    def rolled_back(self, name: str) -> None:
        self.state.update(state="rolled_back", error="unhealthy_after_update")
        self._track(name)

    def committed(self, name: str) -> None:
        self._set(state="committed")
        self._track(name)
        self.publish_state()

    @property
    def state_topic(self) -> str:
        return f"{self.base}/state/{KEY}"

    def attach(self, subscribe: Callable[[str, Callable[[str, bytes], None]], None]) -> None:
        subscribe(f"{self.base}/set/{KEY}", self.on_request)
        subscribe(f"{self.base}/set/{INSTALL_KEY}", self.on_install)

    def publish_state(self) -> None:
        self._send(self.state_topic, json.dumps(self.state, separators=(",", ":")), True)

    # -- MQTT handlers (network thread: never block, never raise) ------------------
    def on_request(self, topic: str, payload: bytes) -> None:
        try:
            req = parse_request(payload)
        except BadRequest as err:
            self._error(err.reason, str(err))
            return
        if not req.install:
            self._announced = req
            self._track(req.name)
            self._set(state="available", latest_version=req.version, summary=req.summary)
            return
        self._start(req)

    def on_install(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() != b"install":
            self._error("not_install", "expected the payload 'install'")
            return
        if self._announced is None:
            self._error("nothing_announced", "no update has been announced")
            return
        self._start(self._announced)

    def install_local(self, req: UpdateRequest) -> bool:
        """Start installing a bundle on this box (``req.path``); False when one is already
        under way or on trial (try again later), True when started or refused outright."""
        if self._store.pending() is not None or self._busy.locked():
            return False
        self._start(req)
        return True

    def _start(self, req: UpdateRequest) -> None:
        if not self._trusted:
            # Refused before a byte is fetched: nothing could pass verification.
            message = "models.trusted_keys is empty: no update can pass"
            self._error("empty_trust_store", message)
            _report(req, False, f"empty_trust_store: {message}")
            return
        if self._store.pending() is not None:
            # The last update has not proven itself yet: .previous must stay the known good one.
            self._error("busy", "the previous update is still in its health window")
            return
        if not self._busy.acquire(blocking=False):
            self._error("busy", "an update is already running")
            return
        self._thread = threading.Thread(
            target=self._run, args=(req,), name="model-update", daemon=True
        )
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    # -- the worker ------------------------------------------------------------------
    def _run(self, req: UpdateRequest) -> None:
        from agent.models.download import download, unpack

        try:
            self._track(req.name)
            self._set(
                state="downloading",
                latest_version=req.version or self.state.get("latest_version", ""),
                summary=req.summary,
                progress=0,
            )
            with tempfile.TemporaryDirectory(prefix="edge-agent-update-") as tmp:
                if req.path is not None and req.path.is_dir():
                    folder = req.path
                else:
                    archive = req.path or download(
                        req.url,
                        Path(tmp) / "bundle.tar",
                        max_bytes=self._max_bytes,
                        stall_s=self._stall_s,
                        sha256=req.sha256,
                        progress=self._progress,
                    )
                    folder = unpack(archive, Path(tmp) / "bundle")
                self._set(state="installing", progress=100)
                manifest = self._store.install(folder, self._runtimes, trusted=self._trusted)
            self._store.mark_pending(manifest.name)
            _report(req, True, f"installed {manifest.ref}")
            self._set(
                state="restarting",
                name=manifest.name,
                installed_version=manifest.version,
                latest_version=manifest.version,
            )
            _LOGGER.info("model update %s installed; restarting to activate it", manifest.ref)
            self._on_installed(manifest.name)
        except BundleRejected as err:
            self._fail(err.code, str(err), req)
        except EdgeAgentError as err:
            self._fail("install_failed", str(err), req)
        except Exception as err:  # supervision boundary of the worker thread
            _LOGGER.exception("model update failed")
            self._fail("internal_error", str(err), req)
        finally:
            self._busy.release()

    def _progress(self, done: int, total: int | None) -> None:
        if total:
            pct = min(99, done * 100 // total)
            if pct >= int(self.state.get("progress", 0)) + 10:  # a message per 10 %
                self._set(progress=pct)

    def _fail(self, code: str, message: str, req: UpdateRequest | None = None) -> None:
        _LOGGER.error("model update refused: %s", message)
        if req is not None:
            _report(req, False, f"{code}: {message}")
        self._set(state="failed", error=code, message=message[:300])
        self._error(code, message)

    def _set(self, **changes: Any) -> None:
        if "state" in changes:
            self.state = {k: v for k, v in self.state.items() if k != "error" and k != "message"}
        self.state.update(changes)
        self.state["time"] = _now_iso()
        self.publish_state()

    def _error(self, reason: str, message: str) -> None:
        reply = {"v": 1, "key": KEY, "error": reason, "message": message[:300], "time": _now_iso()}
        self._send(f"{self.base}/error", json.dumps(reply, separators=(",", ":")), False, qos=0)

    def _send(self, topic: str, payload: str, retain: bool, qos: int = 1) -> None:
        try:
            self._publish(topic, payload, qos, retain)
        except EdgeAgentError as err:
            _LOGGER.warning("cannot publish %s: %s", topic, err)
