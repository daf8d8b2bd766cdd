"""MQTT publisher (paho-mqtt 2): durable outbox, flow control, status with last will, TLS.

One thread ("mqtt-network") owns the paho client: it connects, runs paho's loop, reconnects
with a capped, jittered backoff, and feeds paho from the on-disk outbox so that never more
than ``outbox.max_inflight`` messages are un-acknowledged (paho alone re-sends its whole queue
on reconnect, ignoring its own limit). Other threads only write to the outbox and queue
subscriptions, so paho is never called from two threads at once.

Every paho callback is guarded: an exception inside one would kill the network thread while
``is_connected()`` keeps saying True; the watchdog checks :meth:`MqttPublisher.network_alive`.

Failures are split in two classes:

- the link (broker down, refused TCP, black-holed socket found by the keepalive): retried
  after ``min(reconnect_max_delay, 0.05 s * 2^n)`` x a jitter in [0.5, 1], so the agent is
  back within about a second of the broker;
- the broker or TLS refused us (bad credentials, unknown CA, bad certificate): one ERROR line
  naming the cause, then retries every ``min(refused_max_delay, 1 s * 2^n)`` x jitter, logged
  at DEBUG. Never a plaintext fallback. Passwords and keys are never logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import random
import re
import select
import socket
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from agent.config.mqtt import MqttConfig
from agent.errors import ConfigError, PublishError
from agent.events.registry import Event
from agent.publish.outbox import (
    Outbox,
    OutMessage,
    Priority,
    StoredMessage,
    default_outbox_path,
)
from agent.publish.topics import Topics

_LOGGER = logging.getLogger(__name__)

ONLINE, OFFLINE, STOPPED = "online", "offline", "stopped"

MessageHandler = Callable[[str, bytes], None]
"""Called on the network thread with (topic, payload); must not block."""

# The network thread sleeps in select() on the socket and a wake-up pair: another thread that
# stores a message wakes it at once, so an idle agent does not poll (keepalive and the like
# need a turn at least this often).
_IDLE_WAIT_S = 1.0
_CLOSE_POLL_S = 0.02
_LINK_BASE_DELAY_S = 0.05
_REFUSED_BASE_DELAY_S = 1.0


def _read_password(cfg: MqttConfig) -> str | None:
    if cfg.password_file is not None:
        try:
            return cfg.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        except (OSError, IndexError, UnicodeDecodeError) as err:
            # Name the key and the file, never the content.
            reason = err.strerror if isinstance(err, OSError) else "empty or not UTF-8"
            raise ConfigError(
                [f"mqtt.password_file: cannot read {cfg.password_file}: {reason}"]
            ) from None
    return cfg.password.get_secret_value() if cfg.password is not None else None


def outbox_path(cfg: MqttConfig, client_id: str, environ: dict[str, str] | None = None) -> Path:
    """``mqtt.outbox.path``, else one file per client id under the state directory."""
    if cfg.outbox.path is not None:
        return cfg.outbox.path
    default = default_outbox_path(dict(os.environ) if environ is None else environ)
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", client_id)
    return default.with_name(f"outbox-{safe}.sqlite")


def _tls_reason(err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {err.verify_message}"
    return str(err.reason or err.strerror or type(err).__name__)


class _Client(mqtt.Client):
    """paho's client, closing the socket when the TLS handshake fails (paho leaks it)."""

    def _ssl_wrap_socket(self, tcp_sock: socket.socket) -> ssl.SSLSocket:
        ctx = self._ssl_context
        if ctx is None:
            tcp_sock.close()
            raise ValueError("TLS requested without an SSL context")
        try:
            ssl_sock = ctx.wrap_socket(
                tcp_sock, server_hostname=self._host, do_handshake_on_connect=False
            )
        except BaseException:
            tcp_sock.close()
            raise
        try:
            ssl_sock.settimeout(self._connect_timeout)
            # The context checks the chain and (unless mqtt.tls.insecure) the host name.
            ssl_sock.do_handshake()
        except BaseException:
            ssl_sock.close()
            raise
        return ssl_sock


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, device_id: str, outbox: Outbox | None = None) -> None:
        """``outbox=None`` opens the durable outbox named by the config (see outbox_path)."""
        self._cfg = cfg
        self.topics = Topics.for_device(cfg.base_topic, device_id)
        self._connected = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        # topic -> (qos, handlers): rooms may each want the same topic (homeassistant/status).
        self._subscriptions: dict[str, tuple[int, list[MessageHandler]]] = {}
        self._to_subscribe: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._connect_hooks: list[Callable[[], None]] = []
        self._rng = random.Random()
        # The network thread's wake-up pair, made by start() (a publisher that never starts
        # holds no sockets) and closed by close().
        self._wake_pair: tuple[socket.socket, socket.socket] | None = None
        # Owned by the network thread.
        self._inflight: dict[int, int] = {}  # paho mid -> outbox seq
        self._acked: list[int] = []
        self._sock_open = False
        self._refusal: str | None = None
        self._link_failures = 0
        self._refused_failures = 0
        self._retry_at = 0.0
        self._logged: set[str] = set()
        # Counters (read by stats/watchdog/tests).
        self.reconnects = 0
        self.published = 0
        self.attempts = 0
        self.handler_errors = 0
        self.inflight_peak = 0
        self.disconnected_at: float | None = None
        self.connected_at: float | None = None
        self.progress_ns = time.monotonic_ns()

        client_id = cfg.client_id or f"edge-agent-{device_id}"
        self._client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id)
        self._client.enable_logger(logging.getLogger("agent.publish.paho"))
        if cfg.username:
            self._client.username_pw_set(cfg.username, _read_password(cfg))
        if cfg.tls.enabled:
            self._setup_tls()
        self._client.will_set(self.topics.status, OFFLINE, qos=1, retain=True)
        self._client.connect_timeout = cfg.connect_timeout
        # Our own window is the limit; paho's must never queue below it (status, PINGs aside).
        self._client.max_inflight_messages_set(cfg.outbox.max_inflight + 8)
        self._client.max_queued_messages_set(0)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._client.on_message = self._on_message
        self._outbox = outbox if outbox is not None else self._open_outbox(client_id)

    def _setup_tls(self) -> None:
        tls = self._cfg.tls
        try:
            ctx = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
            if tls.cert_file is not None and tls.key_file is not None:
                ctx.load_cert_chain(str(tls.cert_file), str(tls.key_file))
        except (OSError, ValueError) as err:
            # ssl errors carry no key material; name the keys, not file contents.
            reason = _tls_reason(err) if isinstance(err, ssl.SSLError) else str(err)
            raise ConfigError(
                [f"mqtt.tls: cannot load ca_file/cert_file/key_file: {reason}"]
            ) from None
        self._client.tls_set_context(ctx)
        if tls.insecure:
            _LOGGER.warning("mqtt.tls.insecure: the broker's host name is NOT checked")
            self._client.tls_insecure_set(True)

    def _open_outbox(self, client_id: str) -> Outbox:
        box = self._cfg.outbox
        return Outbox(outbox_path(self._cfg, client_id), box.max_messages, box.max_bytes)

    @property
    def outbox(self) -> Outbox:
        return self._outbox

    # -- lifecycle -------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> None:
        """Connect in the background; wait up to ``timeout`` for the first CONNACK."""
        if self._thread is not None:
            return
        self._client.connect_async(self._cfg.host, self._cfg.port, keepalive=self._cfg.keepalive)
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        self._wake_pair = (reader, writer)
        self._thread = threading.Thread(target=self._run, name="mqtt-network", daemon=True)
        self._thread.start()
        if not self._connected.wait(timeout):
            _LOGGER.warning(
                "MQTT broker %s:%d not connected yet; retrying in the background",
                self._cfg.host,
                self._cfg.port,
            )

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def network_alive(self) -> bool:
        """The network thread runs (what the watchdog checks)."""
        return self._thread is not None and self._thread.is_alive() and not self._stop.is_set()

    def close(self, timeout: float = 5.0) -> None:
        """Flush the outbox (while connected), publish ``stopped``, disconnect, close the outbox.

        Messages not acknowledged stay in the outbox file and go out after the next start.
        """
        if self._closed:
            return
        if self.connected:
            self.flush(timeout)
        self._closed = True
        self._stop.set()
        self._wake()
        if self._thread is not None:
            self._thread.join(timeout + 2.0)
            if self._thread.is_alive():
                _LOGGER.error("MQTT network thread did not stop")
        # The network thread is gone: this thread owns the client now.
        try:
            if self._sock_open and self.connected:
                self._say_stopped(timeout)
            self._client.disconnect()
        except (OSError, ValueError) as err:
            _LOGGER.warning("MQTT disconnect: %s", err)
        self._connected.clear()
        try:
            self._acknowledge()
        except PublishError as err:
            _LOGGER.warning("%s", err)
        self._outbox.close()
        if self._wake_pair is not None:
            for sock in self._wake_pair:
                sock.close()
        # paho closes its socket and wake-up socket pair only in __del__; reinitialise() is the
        # public way to close them now instead of leaving them to the garbage collector.
        self._client.reinitialise()

    def _say_stopped(self, timeout: float) -> None:
        info = self._client.publish(self.topics.status, STOPPED, qos=1, retain=True)
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline:
            if self._client.loop(_CLOSE_POLL_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        if not info.is_published():
            _LOGGER.warning("'stopped' status not acknowledged within %.1f s", timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until the outbox is empty: everything stored so far was acknowledged (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self._outbox) == 0:
                return True
            time.sleep(_CLOSE_POLL_S)
        left = len(self._outbox)
        if left == 0:
            return True
        _LOGGER.warning("%d MQTT messages not acknowledged after %.1f s", left, timeout)
        return False

    @property
    def outbox_depth(self) -> int:
        """Messages stored and not yet acknowledged (published in ``…/stats``)."""
        return len(self._outbox)

    def stats(self) -> dict[str, Any]:
        """Counters for ``…/stats`` and the health check (never any secret)."""
        box = self._outbox.stats
        return {
            "connected": self.connected,
            "reconnects": self.reconnects,
            "connect_attempts": self.attempts,
            "published": self.published,
            "outbox_messages": len(self._outbox),
            "outbox_bytes": self._outbox.size_bytes,
            "inflight": len(self._inflight),
            "inflight_peak": self.inflight_peak,
            "evicted": dict(box.evicted or {}),
            "duplicates": box.duplicates,
            "handler_errors": self.handler_errors,
        }

    # -- publishing ------------------------------------------------------------
    def publish_event(self, event: Event, topics: Topics | None = None) -> None:
        """Store the event for ``…/events`` and ``…/event/<type>`` (one transaction);
        ``topics``: another room's (see :meth:`room`)."""
        topics = topics or self.topics
        payload = json.dumps(event.to_payload(), separators=(",", ":")).encode("utf-8")
        alarm = event.type in self._cfg.outbox.alarm_types
        prio = Priority.ALARM if alarm else Priority.EVENT
        self._store(
            [
                OutMessage(topic, payload, self._cfg.qos, False, prio, event.id)
                for topic in (topics.events, topics.event(event.type))
            ]
        )

    def publish_state(self, key: str, value: str, topics: Topics | None = None) -> None:
        """Retained state; only the newest value per key waits in the outbox."""
        topics = topics or self.topics
        self._store([OutMessage(topics.state(key), value.encode("utf-8"), 1, True, Priority.STATE)])

    def room(self, room_id: str) -> RoomPublisher:
        """A view publishing under ``<base_topic>/<room_id>/`` through this one connection."""
        return RoomPublisher(self, Topics.for_device(self._cfg.base_topic, room_id))

    def publish_raw(
        self,
        topic: str,
        payload: str | bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        priority: Priority | None = None,
    ) -> None:
        """Any topic (e.g. Home Assistant discovery), through the outbox.

        Default class: ``…/stats`` is STATS, retained messages are STATE (coalesced per
        topic), anything else EVENT.
        """
        if not topic or "+" in topic or "#" in topic or len(topic.encode("utf-8")) > 65535:
            raise PublishError(f"invalid MQTT topic {topic!r}")
        if qos not in (0, 1, 2):
            raise PublishError(f"invalid MQTT QoS {qos}")
        if priority is None:
            if topic == f"{self.topics.base}/stats":
                priority = Priority.STATS
            elif retain:
                priority = Priority.STATE
            else:
                priority = Priority.EVENT
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        self._store([OutMessage(topic, data, qos, retain, priority)])

    def _store(self, messages: list[OutMessage]) -> None:
        if self._closed:
            raise PublishError("MQTT publisher is closed")
        self._outbox.put(messages)
        self.published += len(messages)
        self._wake()

    def _wake(self) -> None:
        """Wake the network thread from its select() (any thread; never blocks)."""
        # BlockingIOError: already woken (buffer full); OSError: closed.
        if self._wake_pair is not None:
            with contextlib.suppress(OSError):
                self._wake_pair[1].send(b"\0")

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        """Subscribe now (if connected) and again after every reconnect; a second handler of
        the same topic is called too."""
        _, handlers = self._subscriptions.get(topic, (qos, []))
        self._subscriptions[topic] = (qos, [*handlers, handler])
        self._to_subscribe.put(topic)
        self._wake()

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        """Run on the network thread after every (re)connect, once ``online`` is published."""
        self._connect_hooks.append(hook)

    # -- network thread ----------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:  # supervision boundary: log, pause, carry on
                _LOGGER.exception("error in the MQTT network loop")
                self._stop.wait(1.0)

    def _step(self) -> None:
        if not self._sock_open:
            wait = self._retry_at - time.monotonic()
            if wait > 0:
                self._stop.wait(min(wait, 0.25))
                return
            self._connect_once()
            return
        rc = self._service(_IDLE_WAIT_S)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._link_lost(rc)
            return
        self._pump()

    def _service(self, timeout: float) -> MQTTErrorCode:
        """One turn of paho's external-loop API (``loop_read`` / ``loop_write`` /
        ``loop_misc``), waiting in select() for the socket or our wake-up pair. paho's own
        ``loop()`` cannot be woken by a message stored in our outbox."""
        client = self._client
        sock = client.socket()
        if sock is None or self._wake_pair is None:
            return MQTTErrorCode.MQTT_ERR_NO_CONN
        wake = self._wake_pair[0]
        # A TLS socket may hold decrypted bytes select() cannot see.
        pending = sock.pending() if isinstance(sock, ssl.SSLSocket) else 0
        want_write = [sock] if client.want_write() else []
        try:
            readable, writable, _ = select.select(
                [sock, wake], want_write, [], 0.0 if pending else timeout
            )
        except (OSError, ValueError, TypeError):
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if wake in readable:
            with contextlib.suppress(BlockingIOError):
                wake.recv(4096)
        if sock in readable or pending:
            rc = client.loop_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or client.socket() is None:
                return (
                    rc if rc != MQTTErrorCode.MQTT_ERR_SUCCESS else MQTTErrorCode.MQTT_ERR_CONN_LOST
                )
        if sock in writable or client.want_write():
            rc = client.loop_write()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return rc
        return client.loop_misc()

    def _connect_once(self) -> None:
        self.attempts += 1
        self._refusal = None
        where = f"{self._cfg.host}:{self._cfg.port}"
        try:
            rc = self._client.reconnect()
        except ssl.SSLError as err:
            self._refused(f"TLS handshake with {where} failed: {_tls_reason(err)}")
            return
        except (OSError, ValueError) as err:
            self._backoff_link(f"cannot reach MQTT broker {where}: {err}")
            return
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._backoff_link(f"cannot reach MQTT broker {where}: {mqtt.error_string(rc)}")
            return
        self._sock_open = True

    def _link_lost(self, rc: MQTTErrorCode) -> None:
        self._sock_open = False
        self._connected.clear()
        if self._refusal is not None:
            self._refused(
                f"MQTT broker {self._cfg.host}:{self._cfg.port} refused the connection: "
                f"{self._refusal}"
            )
        else:
            self._backoff_link(
                f"MQTT connection to {self._cfg.host}:{self._cfg.port} lost: "
                f"{mqtt.error_string(rc)}"
            )

    def _backoff_link(self, message: str) -> None:
        delay = min(self._cfg.reconnect_max_delay, _LINK_BASE_DELAY_S * 2**self._link_failures)
        delay *= self._rng.uniform(0.5, 1.0)
        self._link_failures = min(self._link_failures + 1, 30)
        self._retry_at = time.monotonic() + delay
        self._log_once(logging.WARNING, "link", "%s; retrying (backoff ≤ %.1f s)", message)

    def _refused(self, message: str) -> None:
        delay = min(self._cfg.refused_max_delay, _REFUSED_BASE_DELAY_S * 2**self._refused_failures)
        delay *= self._rng.uniform(0.5, 1.0)
        self._refused_failures = min(self._refused_failures + 1, 30)
        self._retry_at = time.monotonic() + delay
        self._log_once(
            logging.ERROR,
            message,
            "%s; not connecting otherwise (retrying, backoff ≤ %.0f s)",
            message,
        )

    def _log_once(self, level: int, key: str, fmt: str, message: str) -> None:
        """One line per distinct problem until the next successful connect; then DEBUG."""
        cap = (
            self._cfg.reconnect_max_delay if level < logging.ERROR else self._cfg.refused_max_delay
        )
        if key in self._logged:
            _LOGGER.debug(fmt, message, cap)
            return
        self._logged.add(key)
        _LOGGER.log(level, fmt, message, cap)

    def _pump(self) -> None:
        """Drain subscriptions, delete acknowledged rows, top the window up from the outbox."""
        if not self.connected:
            return
        while True:
            try:
                topic = self._to_subscribe.get_nowait()
            except queue.Empty:
                break
            if topic in self._subscriptions:
                self._client.subscribe(topic, qos=self._subscriptions[topic][0])
        self._acknowledge()
        room = self._cfg.outbox.max_inflight - len(self._inflight)
        if room <= 0:
            return
        for row in self._outbox.take(room):
            self._send(row)
        self.inflight_peak = max(self.inflight_peak, len(self._inflight))

    def _send(self, row: StoredMessage) -> None:
        try:
            info = self._client.publish(row.topic, row.payload, qos=row.qos, retain=row.retain)
        except ValueError as err:
            _LOGGER.error("dropping unpublishable outbox message on %r: %s", row.topic, err)
            self._acked.append(row.seq)
            return
        if row.qos == 0:
            self._acked.append(row.seq)  # at most once: gone once handed to the socket
        else:
            # Kept by paho until PUBACK, and re-sent by paho after a reconnect.
            self._inflight[info.mid] = row.seq

    def _acknowledge(self) -> None:
        if self._acked:
            done, self._acked = self._acked, []
            self._outbox.ack(done)

    # -- paho callbacks (network thread) ---------------------------------------
    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            if reason.is_failure:
                self._refusal = str(reason)
                return
            if self.connected_at is not None:
                _LOGGER.info("MQTT reconnected to %s:%d", self._cfg.host, self._cfg.port)
            else:
                _LOGGER.info("MQTT connected to %s:%d", self._cfg.host, self._cfg.port)
            self._link_failures = self._refused_failures = 0
            self._logged.clear()
            self.connected_at = time.monotonic()
            client.publish(self.topics.status, ONLINE, qos=1, retain=True)
            # Everything is subscribed here; queued requests would only subscribe twice (and
            # each SUBSCRIBE makes the broker resend retained messages).
            while not self._to_subscribe.empty():
                self._to_subscribe.get_nowait()
            for topic, (qos, _) in self._subscriptions.items():
                client.subscribe(topic, qos=qos)
            self._connected.set()
            self.progress_ns = time.monotonic_ns()
            for hook in self._connect_hooks:
                hook()
        except Exception:
            _LOGGER.exception("error in MQTT on_connect")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # A raising handler would kill the network thread: count it and carry on (with the
        # other handlers: one room's failure is not another's).
        for pattern, (_, handlers) in list(self._subscriptions.items()):
            if not mqtt.topic_matches_sub(pattern, msg.topic):
                continue
            for handler in handlers:
                try:
                    handler(msg.topic, bytes(msg.payload))
                except Exception:
                    self.handler_errors += 1
                    _LOGGER.exception("error handling MQTT message on %s", msg.topic)

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        try:
            if self._connected.is_set() and not self._closed:
                self.reconnects += 1
                self.disconnected_at = time.monotonic()
                _LOGGER.warning("MQTT disconnected: %s", reason)
            self._connected.clear()
        except Exception:
            _LOGGER.exception("error in MQTT on_disconnect")

    def _on_publish(
        self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any
    ) -> None:
        try:
            seq = self._inflight.pop(mid, None)
            if seq is not None:
                self._acked.append(seq)
            self.progress_ns = time.monotonic_ns()
        except Exception:
            _LOGGER.exception("error in MQTT on_publish")


class RoomPublisher:
    """One room's topics on the agent's single MQTT connection and outbox.

    The room's ``…/status`` says ``online`` after every (re)connect and ``stopped`` at a clean
    exit (:meth:`say_stopped`). An MQTT connection has one last will, and it is the agent's
    own ``…/status``; so a crashed agent leaves the rooms' last word standing, and Home
    Assistant's availability of a room follows both topics (agent.publish.discovery).
    """

    def __init__(self, publisher: MqttPublisher, topics: Topics) -> None:
        self._pub = publisher
        self.topics = topics
        publisher.add_connect_hook(self._say_online)

    @property
    def agent_topics(self) -> Topics:
        return self._pub.topics

    @property
    def reconnects(self) -> int:
        return self._pub.reconnects

    @property
    def published(self) -> int:
        return self._pub.published

    @property
    def handler_errors(self) -> int:
        return self._pub.handler_errors

    @property
    def outbox_depth(self) -> int:
        return self._pub.outbox_depth

    def _say_online(self) -> None:
        self._pub.publish_raw(self.topics.status, ONLINE, 1, True)

    def say_stopped(self) -> None:
        """Before the agent's publisher closes (which flushes the outbox)."""
        self._pub.publish_raw(self.topics.status, STOPPED, 1, True)

    def publish_event(self, event: Event) -> None:
        self._pub.publish_event(event, self.topics)

    def publish_state(self, key: str, value: str) -> None:
        self._pub.publish_state(key, value, self.topics)

    def publish_raw(
        self,
        topic: str,
        payload: str | bytes,
        qos: int = 1,
        retain: bool = False,
        *,
        priority: Priority | None = None,
    ) -> None:
        if priority is None and topic == f"{self.topics.base}/stats":
            priority = Priority.STATS
        self._pub.publish_raw(topic, payload, qos, retain, priority=priority)

    def subscribe(self, topic: str, handler: MessageHandler, qos: int = 1) -> None:
        self._pub.subscribe(topic, handler, qos)

    def add_connect_hook(self, hook: Callable[[], None]) -> None:
        self._pub.add_connect_hook(hook)
