"""Durable outbox: every MQTT message is on disk before it is handed to paho.

SQLite in WAL mode with ``synchronous=FULL``: a row survives ``kill -9`` and power loss once
:meth:`Outbox.put` returned. A row is deleted only when the broker acknowledged it
(:meth:`Outbox.ack`), so delivery is at least once; subscribers dedupe on the event ``id``.

Schema (``user_version`` 1)::

    outbox(seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- global send order
           msg_id TEXT,                            -- event id (NULL for non-events)
           topic TEXT, payload BLOB, qos INTEGER, retain INTEGER,
           priority INTEGER,                       -- Priority below
           created_ns INTEGER,                     -- time.time_ns() when stored
           UNIQUE(msg_id, topic))                  -- the same event is never stored twice

Rows are sent in ``seq`` order. The publisher takes at most ``max_inflight`` rows at a time
(:meth:`take`); rows taken and not yet acknowledged are "in flight" (``seq <= cursor``) and are
never evicted or coalesced away.

Bounded on disk by ``max_messages`` and ``max_bytes``. Eviction order when full: the oldest row
of the lowest class first -- STATS, then EVENT, then STATE -- and never an ALARM. A new row
never evicts a row of a higher class than its own (a new stats message does not push out an
event: it is dropped itself). Retained messages are coalesced per topic (only the newest value
of a state or discovery topic waits), so STATE rows stay few. Alarms are kept even over the
bound (counted in ``over_limit``).
"""

from __future__ import annotations

import fcntl
import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import IO

from agent.errors import PublishError

_LOGGER = logging.getLogger(__name__)

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_id TEXT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    created_ns INTEGER NOT NULL,
    UNIQUE(msg_id, topic)
);
CREATE INDEX IF NOT EXISTS outbox_evict ON outbox(priority, seq);
CREATE INDEX IF NOT EXISTS outbox_topic ON outbox(topic) WHERE retain = 1;
"""


class Priority(IntEnum):
    """Eviction class: lower goes first when the outbox is full; ALARM never goes."""

    STATS = 0
    EVENT = 1
    STATE = 2
    ALARM = 3


@dataclass(frozen=True, slots=True)
class OutMessage:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = False
    priority: Priority = Priority.EVENT
    msg_id: str | None = None

    @property
    def size(self) -> int:
        return len(self.payload) + len(self.topic.encode("utf-8"))


@dataclass(frozen=True, slots=True)
class StoredMessage:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool


@dataclass(slots=True)
class OutboxStats:
    stored: int = 0
    duplicates: int = 0
    coalesced: int = 0
    acked: int = 0
    over_limit: int = 0
    evicted: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if self.evicted is None:
            self.evicted = {p.name.lower(): 0 for p in Priority}


def default_outbox_path(environ: dict[str, str]) -> Path:
    """``$STATE_DIRECTORY`` (systemd ``StateDirectory=``; first entry) or the XDG state dir."""
    state = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / "outbox.sqlite"
    xdg = environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".local" / "state"
    return base / "edge-agent" / "outbox.sqlite"


class Outbox:
    """Thread-safe; one process at a time per file (an flock on ``<path>.lock``)."""

    def __init__(
        self,
        path: Path | None,
        max_messages: int = 100_000,
        max_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        """``path=None`` keeps the outbox in memory (``replay``/``demo``/tests)."""
        self.path = path
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.stats = OutboxStats()
        self._lock = threading.Lock()
        self._cursor = 0  # rows with seq <= cursor were handed to paho (in flight)
        self._lockfile: IO[bytes] | None = None
        if path is None:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        else:
            self._db = self._open_file(path)
        try:
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
            row = self._db.execute(
                "SELECT count(*), coalesce(sum(length(payload) + length(CAST(topic AS BLOB))), 0)"
                " FROM outbox"
            ).fetchone()
        except sqlite3.Error as err:
            self.close()
            raise PublishError(f"outbox {path}: {err}") from err
        self._count, self._bytes = int(row[0]), int(row[1])
        # Newest row written: ``take`` skips the query while nothing is past the cursor (the
        # network thread asks every loop).
        newest = self._db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
        self._newest = int(newest[0])
        if self._count:
            _LOGGER.info("outbox %s: %d messages waiting from before", path, self._count)

    def _open_file(self, path: Path) -> sqlite3.Connection:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            self._lockfile = path.with_name(path.name + ".lock").open("ab")
        except OSError as err:
            raise PublishError(f"outbox {path}: {err}") from err
        try:
            fcntl.flock(self._lockfile.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lockfile.close()
            self._lockfile = None
            raise PublishError(
                f"outbox {path} is in use by another process (one agent per outbox)"
            ) from None
        try:
            db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=5000")
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
        except sqlite3.Error as err:
            self._lockfile.close()
            self._lockfile = None
            raise PublishError(f"outbox {path}: {err}") from err
        return db

    # -- writing -------------------------------------------------------------------------------
    def put(self, messages: Iterable[OutMessage]) -> int:
        """Store ``messages`` in one transaction (all or none); returns how many were added."""
        added = 0
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                for msg in messages:
                    if msg.retain:
                        self._coalesce(msg.topic)
                    cur = db.execute(
                        "INSERT OR IGNORE INTO outbox"
                        "(msg_id, topic, payload, qos, retain, priority, created_ns)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (
                            msg.msg_id,
                            msg.topic,
                            msg.payload,
                            msg.qos,
                            int(msg.retain),
                            int(msg.priority),
                            time.time_ns(),
                        ),
                    )
                    if cur.rowcount == 0:
                        self.stats.duplicates += 1
                        continue
                    self._count += 1
                    self._bytes += msg.size
                    self._newest = max(self._newest, int(cur.lastrowid or 0))
                    added += 1
                    self._evict(msg.priority)
                db.execute("COMMIT")
            except sqlite3.Error as err:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._recount()
                raise PublishError(f"outbox write failed: {err}") from err
            self.stats.stored += added
        return added

    def _coalesce(self, topic: str) -> None:
        """Drop older retained values of ``topic`` that are not in flight."""
        rows = self._db.execute(
            "SELECT seq, length(payload) + length(CAST(topic AS BLOB)) FROM outbox"
            " WHERE topic = ? AND retain = 1 AND seq > ?",
            (topic, self._cursor),
        ).fetchall()
        for seq, size in rows:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._count -= 1
            self._bytes -= int(size)
            self.stats.coalesced += 1

    def _evict(self, new_priority: Priority) -> None:
        """While over a bound: drop the oldest row of the lowest class <= the new row's class."""
        ceiling = min(int(new_priority), int(Priority.ALARM) - 1)
        for _ in range(self._count + 1):  # bounded: each turn removes a row or stops
            if self._count <= self.max_messages and self._bytes <= self.max_bytes:
                return
            victim = self._db.execute(
                "SELECT seq, priority, length(payload) + length(CAST(topic AS BLOB)) FROM outbox"
                " WHERE priority <= ? AND seq > ? ORDER BY priority, seq LIMIT 1",
                (ceiling, self._cursor),
            ).fetchone()
            if victim is None:
                # Only alarms, higher classes or in-flight rows left: keep (alarms never go).
                self.stats.over_limit += 1
                if (
                    self.stats.over_limit in (1, 10, 100, 1000)
                    or self.stats.over_limit % 10000 == 0
                ):
                    _LOGGER.warning(
                        "outbox over its bound (%d messages, %d bytes): nothing evictable",
                        self._count,
                        self._bytes,
                    )
                return
            seq, prio, size = victim
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
            self._count -= 1
            self._bytes -= int(size)
            name = Priority(int(prio)).name.lower()
            assert self.stats.evicted is not None
            self.stats.evicted[name] += 1
            if self.stats.evicted[name] in (1, 100) or self.stats.evicted[name] % 10000 == 0:
                _LOGGER.warning(
                    "outbox full: evicted %d %s messages so far", self.stats.evicted[name], name
                )

    def _recount(self) -> None:
        row = self._db.execute(
            "SELECT count(*), coalesce(sum(length(payload) + length(CAST(topic AS BLOB))), 0)"
            " FROM outbox"
        ).fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        # Newest row written: ``take`` skips the query while nothing is past the cursor (the
        # network thread asks every loop).
        newest = self._db.execute("SELECT coalesce(max(seq), 0) FROM outbox").fetchone()
        self._newest = int(newest[0])

    # -- sending -------------------------------------------------------------------------------
    def take(self, limit: int) -> list[StoredMessage]:
        """The next ``limit`` rows after the cursor, in order; they become in flight."""
        if limit <= 0:
            return []
        with self._lock:
            if self._newest <= self._cursor:
                return []
            try:
                rows = self._db.execute(
                    "SELECT seq, topic, payload, qos, retain FROM outbox WHERE seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (self._cursor, limit),
                ).fetchall()
            except sqlite3.Error as err:
                raise PublishError(f"outbox read failed: {err}") from err
            if rows:
                self._cursor = int(rows[-1][0])
        return [StoredMessage(int(s), t, bytes(p), int(q), bool(r)) for s, t, p, q, r in rows]

    def ack(self, seqs: Iterable[int]) -> None:
        """The broker acknowledged these rows: delete them (one transaction)."""
        batch = list(seqs)
        if not batch:
            return
        with self._lock:
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE")
                for seq in batch:
                    row = db.execute(
                        "DELETE FROM outbox WHERE seq = ?"
                        " RETURNING length(payload) + length(CAST(topic AS BLOB))",
                        (seq,),
                    ).fetchone()
                    if row is not None:
                        self._count -= 1
                        self._bytes -= int(row[0])
                        self.stats.acked += 1
                db.execute("COMMIT")
            except sqlite3.Error as err:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._recount()
                raise PublishError(f"outbox delete failed: {err}") from err

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def size_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def close(self) -> None:
        with self._lock:
            try:
                self._db.close()
            finally:
                if self._lockfile is not None:
                    self._lockfile.close()
                    self._lockfile = None
