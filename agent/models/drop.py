"""The drop folder (``models.drop_dir``): bundles put there are installed by the running agent.

A bundle folder or a ``.tar`` of one, copied (or scp'd) into the folder, goes through exactly
the path of an MQTT update (``agent.models.updates``): signature against the trust store,
hashes, a newer release, expiry, compatibility, the canary, a pending mark, the restart and
the health window. An entry is taken only once it has looked the same on two polls (a copy
still under way is left alone); afterwards it is moved to ``done/`` or ``rejected/`` with a
``<name>.reason`` file beside it, so the folder shows what happened and nothing is tried twice.
Hidden entries (``.name``) and ``*.part`` files are ignored.
"""

from __future__ import annotations

import logging
import time
from functools import partial
from pathlib import Path

from agent.models.updates import ModelUpdater, UpdateRequest

_LOGGER = logging.getLogger(__name__)

DONE, REJECTED = "done", "rejected"
MAX_ENTRIES = 100  # looked at per poll
MAX_FILES = 1000  # per bundle folder, for the "has it stopped changing" snapshot


def _snapshot(path: Path) -> tuple[int, int, int] | None:
    """(files, bytes, newest mtime) of an entry; None when it vanished meanwhile."""
    try:
        if path.is_dir():
            files = [p for _, p in zip(range(MAX_FILES), path.rglob("*"), strict=False)]
            stats = [p.stat() for p in files if p.is_file()]
            newest = max((s.st_mtime_ns for s in stats), default=0)
            return (len(stats), sum(s.st_size for s in stats), newest)
        st = path.stat()
        return (1, st.st_size, st.st_mtime_ns)
    except OSError:
        return None


class DropFolder:
    def __init__(self, root: Path, updater: ModelUpdater, poll_s: float = 5.0) -> None:
        self.root = root
        self._updater = updater
        self._poll_s = poll_s
        self._next = 0.0
        self._seen: dict[str, tuple[int, int, int]] = {}
        root.mkdir(parents=True, exist_ok=True)

    def tick(self) -> None:
        """Called from the agent's main loop; polls at most every ``poll_s``."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._poll_s
        try:
            self.poll()
        except OSError as err:
            _LOGGER.warning("drop folder %s: %s", self.root, err)

    def poll(self) -> None:
        entries = sorted(
            p
            for p in self.root.iterdir()
            if not p.name.startswith(".")
            and p.name not in (DONE, REJECTED)
            and not p.name.endswith(".part")
            and (p.is_dir() or p.suffix == ".tar")
        )[:MAX_ENTRIES]
        seen, self._seen = self._seen, {}
        for path in entries:
            snap = _snapshot(path)
            if snap is None:
                continue
            self._seen[path.name] = snap
            if seen.get(path.name) != snap:
                continue  # new or still being copied: look again next time
            req = UpdateRequest(url="", sha256="", path=path, on_done=partial(self._file, path))
            if self._updater.install_local(req):
                _LOGGER.info("drop folder: installing %s", path.name)
            return  # one at a time; the rest wait for the next poll

    def _file(self, path: Path, ok: bool, message: str) -> None:
        dest = self.root / (DONE if ok else REJECTED)
        dest.mkdir(exist_ok=True)
        target = dest / path.name
        if target.exists():
            target = dest / f"{path.stem}-{time.strftime('%Y%m%dT%H%M%S')}{path.suffix}"
        path.replace(target)
        target.with_name(target.name + ".reason").write_text(message + "\n", "utf-8")
        log = _LOGGER.info if ok else _LOGGER.error
        log("drop folder: %s -> %s/ (%s)", path.name, dest.name, message)


__all__ = ["DropFolder"]
