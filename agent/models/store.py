"""Model store: one folder per model with a manifest.json; bytes verified before load.

``install`` verifies a new version (signature when a trust store is given, manifest, licence,
sha256, a canary in a child process, a load with warm-up) before it replaces the installed one,
which is kept as ``.<name>.previous`` for ``rollback``. A running agent loads a new version at
its next start (``agent.models.updates``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import __version__
from agent.config.runtimes import RuntimesConfig
from agent.core import faults
from agent.errors import EdgeAgentError, ModelError, ModelIntegrityError
from agent.models.bundle import verify_bundle
from agent.models.canary import check_canary
from agent.runtimes.base import (
    RuntimeName,
    RuntimeOptions,
    Session,
    TensorSpec,
    WarmupInput,
    open_session,
    session_backend,
)

_LOGGER = logging.getLogger(__name__)

MODELS_ENV = "EDGE_AGENT_MODELS"
_REQUIRED = ("name", "version", "file", "sha256", "runtime", "licence", "source")
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_REDISTRIBUTABLE = {"Apache-2.0", "MIT", "BSD-2-Clause", "BSD-3-Clause", "CC0-1.0", "public-domain"}


def _name_of(folder: Path) -> str:
    """The ``name`` a bundle folder's manifest declares ("" when unreadable)."""
    try:
        name = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError):
        return ""
    return str(name) if isinstance(name, str) and _NAME.match(name) else ""


_LEFTOVER = re.compile(r"^\.(.+)\.(incoming|trash|swap)$")


def _failpoint(step: str) -> None:
    """Tests kill the process here (``EDGE_AGENT_FAILPOINT=<step>``) to prove recovery."""
    faults.kill_if(step)


@contextmanager
def _locked(root: Path, wait: bool = True) -> Iterator[bool]:
    """``<root>/.lock`` held exclusively (flock); yields False when ``wait`` is off and
    another process holds it."""
    import fcntl

    fd = os.open(root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # closing releases the lock


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for p in sorted(path.rglob("*")):
        if p.is_file():
            with p.open("rb") as f:
                os.fsync(f.fileno())
    for d in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
        _fsync_dir(d)
    _fsync_dir(path)


def _complete(folder: Path) -> bool:
    """A staged copy is complete when its manifest reads and every listed file verifies."""
    try:
        manifest = read_manifest(folder)
        if sha256_of(manifest.path) != manifest.sha256:
            return False
        files = json.loads((folder / "manifest.json").read_text(encoding="utf-8")).get("files")
        for name, want in (files or {}).items():
            target = folder / name
            if target.stat().st_size != want["size"] or sha256_of(target) != want["sha256"]:
                return False
    except (OSError, ValueError, KeyError, TypeError, ModelError):
        return False
    return True


def bundled_root() -> Path | None:
    """The models that came with the agent: ``<repo>/models`` in a source checkout, else the
    copy the wheel installs under ``<prefix>/share/edge-agent/models``."""
    checkout = Path(__file__).resolve().parents[2] / "models"
    if checkout.is_dir():
        return checkout
    shared = Path(sys.prefix) / "share" / "edge-agent" / "models"
    return shared if shared.is_dir() else None


def default_root() -> Path:
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    return bundled_root() or Path(__file__).resolve().parents[2] / "models"


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    version: str
    file: str
    sha256: str
    runtime: RuntimeName
    licence: str
    source: str
    folder: Path
    task: str = ""
    precision: str = ""
    preprocess: dict[str, Any] = field(default_factory=dict)
    postprocess: dict[str, Any] = field(default_factory=dict)
    warmup: dict[str, Any] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.folder / self.file

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"


def read_manifest(folder: Path) -> Manifest:
    path = folder / "manifest.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {path}: {err}") from err
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ModelError(f"{path}: missing {', '.join(missing)}")
    if not isinstance(data["name"], str) or not _NAME.match(data["name"]):
        raise ModelError(f"{path}: name {data['name']!r} is not a plain model name")
    if not isinstance(data["file"], str) or Path(data["file"]).name != data["file"]:
        raise ModelError(f"{path}: file {data['file']!r} must be a file name in the folder")
    if data["runtime"] not in ("onnx", "tflite"):
        raise ModelError(f"{path}: runtime must be 'onnx' or 'tflite'")
    if data["licence"] not in _REDISTRIBUTABLE:
        raise ModelError(f"{path}: licence {data['licence']!r} is not redistributable")
    return Manifest(
        name=data["name"],
        version=str(data["version"]),
        file=data["file"],
        sha256=data["sha256"].lower(),
        runtime=data["runtime"],
        licence=data["licence"],
        source=data["source"],
        folder=folder,
        task=data.get("task", ""),
        precision=data.get("precision", ""),
        preprocess=dict(data.get("preprocess", {})),
        postprocess=dict(data.get("postprocess", {})),
        warmup=dict(data.get("warmup", {})),
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def warmup_inputs(manifest: Manifest) -> dict[str, WarmupInput]:
    """The manifest's optional ``warmup`` hints: ``{input: {"shape": [...], "value": x}}``."""
    hints: dict[str, WarmupInput] = {}
    for name, spec in manifest.warmup.items():
        try:
            shape = spec.get("shape")
            hints[name] = WarmupInput(
                shape=tuple(int(d) for d in shape) if shape is not None else None,
                value=float(spec.get("value", 0.0)),
            )
        except (AttributeError, TypeError, ValueError) as err:
            raise ModelError(f"{manifest.ref}: bad warmup entry for {name!r}: {err}") from err
    return hints


def open_model(
    manifest: Manifest,
    runtimes: RuntimesConfig | None = None,
    threads: int | None = None,
) -> Session:
    """Open a manifest's (already verified) file with the configured back-end, warmed up."""
    options = RuntimeOptions.for_model(
        runtimes, manifest.name, threads=threads, warmup_inputs=warmup_inputs(manifest)
    )
    return open_session(manifest.path, manifest.runtime, options)


class ModelStore:
    """Folders ``<root>/<name>``; an install or rollback interrupted at any step (even by
    ``kill -9``) is finished or undone by the next ``ModelStore`` on the same root."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()
        self.recover()

    def seed(self, source: Path | None = None) -> list[str]:
        """Copy each bundled model that this store lacks (first start of an installed agent);
        a model already here, such as an installed update, is never replaced."""
        source = source if source is not None else bundled_root()
        if source is None or not source.is_dir() or source.resolve() == self.root.resolve():
            return []
        have = set(self.names())
        copied = []
        for folder in sorted(source.iterdir()):
            if folder.name in have or not (folder / "manifest.json").is_file():
                continue
            self.root.mkdir(parents=True, exist_ok=True)
            incoming = self.root / f".{folder.name}.incoming"
            shutil.rmtree(incoming, ignore_errors=True)
            shutil.copytree(folder, incoming)
            _fsync_tree(incoming)
            incoming.rename(self.root / folder.name)
            copied.append(folder.name)
        if copied:
            _fsync_dir(self.root)
            _LOGGER.info("model store %s: installed bundled %s", self.root, ", ".join(copied))
        return copied

    def recover(self) -> list[str]:
        """Bring every model back to exactly its old or its new version; returns what it did.

        Leftovers of the swap (see ``install``): ``.<name>.incoming`` (staged, complete only
        once verified), ``.<name>.trash`` (an old previous being deleted), ``.<name>.swap``
        (``rollback``'s middle step).
        """
        done: list[str] = []
        if not self.root.is_dir() or not os.access(self.root, os.W_OK):
            return done
        if not any(_LEFTOVER.match(p.name) for p in self.root.iterdir()):
            return done  # the common case: no lock file, nothing written
        with _locked(self.root, wait=False) as held:
            if held:  # else an install or rollback is under way: its leftovers are live
                self._recover(done)
        if done:
            _fsync_dir(self.root)
            for line in done:
                _LOGGER.warning("model store %s: %s", self.root, line)
        return done

    def _recover(self, done: list[str]) -> None:
        for leftover in sorted(self.root.iterdir()):
            m = _LEFTOVER.match(leftover.name)
            if not m or not leftover.is_dir():
                continue
            name, kind = m.group(1), m.group(2)
            current, previous = self.root / name, self._previous_dir(name)
            if kind == "trash":
                shutil.rmtree(leftover, ignore_errors=True)
                done.append(f"{name}: removed an old version being deleted")
            elif kind == "swap":
                if not current.exists():
                    leftover.rename(current)  # rollback stopped after its first rename
                    done.append(f"{name}: rollback undone")
                elif not previous.exists():
                    leftover.rename(previous)  # ... or after its second
                    done.append(f"{name}: rollback finished")
                else:
                    shutil.rmtree(leftover, ignore_errors=True)
            elif current.exists():
                shutil.rmtree(leftover, ignore_errors=True)  # staged, never activated
                done.append(f"{name}: unfinished install discarded, old version kept")
            elif _complete(leftover):
                leftover.rename(current)  # the old one was already set aside
                done.append(f"{name}: interrupted install finished")
            else:
                shutil.rmtree(leftover, ignore_errors=True)
                if previous.exists():
                    previous.rename(current)
                    done.append(f"{name}: unfinished install discarded, old version restored")

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name
            for p in self.root.iterdir()
            if not p.name.startswith(".") and (p / "manifest.json").is_file()
        )

    def manifest(self, name: str) -> Manifest:
        folder = self.root / name
        if not _NAME.match(name) or not (folder / "manifest.json").is_file():
            raise ModelError(f"model {name!r} not found in {self.root} (have: {self.names()})")
        return read_manifest(folder)

    def verify(self, manifest: Manifest) -> None:
        try:
            actual = sha256_of(manifest.path)
        except OSError as err:
            raise ModelIntegrityError(
                f"{manifest.ref}: cannot read {manifest.path}: {err}"
            ) from err
        if actual != manifest.sha256:
            raise ModelIntegrityError(
                f"{manifest.ref}: {manifest.file} sha256 {actual[:12]}… does not match the "
                f"manifest's {manifest.sha256[:12]}…; refusing to load"
            )

    def load(
        self,
        name: str,
        threads: int | None = None,
        runtimes: RuntimesConfig | None = None,
        *,
        stateful: bool = False,
    ) -> tuple[Session, Manifest]:
        """Verify, then open with the manifest's runtime on the configured accelerator.

        ``stateful``: the model keeps state between runs inside its session (a streaming
        model), so its caller needs a session of its own; this store always opens a new
        one, and a sharing store (agent.models.shared) does not share it."""
        manifest = self.manifest(name)
        self.verify(manifest)
        session = open_model(manifest, runtimes, threads)
        _LOGGER.info(
            "model %s loaded (%s, %s, %s)",
            manifest.ref,
            session_backend(session),
            manifest.precision or "?",
            _warmup_text(session),
        )
        return session, manifest

    # -- install / rollback -------------------------------------------------------------

    def _previous_dir(self, name: str) -> Path:
        return self.root / f".{name}.previous"

    def previous(self, name: str) -> Manifest | None:
        folder = self._previous_dir(name)
        return read_manifest(folder) if (folder / "manifest.json").is_file() else None

    def install(
        self,
        source: Path,
        runtimes: RuntimesConfig | None = None,
        force: bool = False,
        trusted: Sequence[bytes] | None = None,
    ) -> Manifest:
        """See ``_install``; one install or rollback at a time per store (a lock file)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with _locked(self.root):
            return self._install(source, runtimes, force, trusted)

    def _install(
        self,
        source: Path,
        runtimes: RuntimesConfig | None,
        force: bool,
        trusted: Sequence[bytes] | None,
    ) -> Manifest:
        """Install the model folder ``source`` (manifest.json + file) as the active version.

        Nothing in the store changes unless the manifest is valid, the licence is
        redistributable, the bytes match the sha256, the model loads and runs (warm-up) and,
        unless ``force``, its inputs and outputs are those of the installed version (the
        extractor around it expects them). The version it replaces is kept for ``rollback``.
        """
        if trusted is not None:
            # Signature, every file's hash and size, release, expiry, agent version: before
            # anything of the bundle is read or run.
            verify_bundle(
                source,
                trusted,
                installed_release=self.release(_name_of(source)),
                agent_version=__version__,
            )
        new = read_manifest(source)
        self.verify(new)
        # The canary, in a child process: a runtime crash, NaN, other output shapes than
        # declared, or 10x the installed version's time refuse the model.
        installed = self.root / new.name
        check_canary(source, installed if (installed / "manifest.json").is_file() else None)
        session = open_model(new, runtimes)  # and it must load with this box's runtimes
        if not force and new.name in self.names():
            self._check_compatible(self.manifest(new.name), new, session)
        self.root.mkdir(parents=True, exist_ok=True)
        incoming = self.root / f".{new.name}.incoming"
        shutil.rmtree(incoming, ignore_errors=True)
        try:
            shutil.copytree(source, incoming)
            _fsync_tree(incoming)
            _failpoint("staged")
            staged = read_manifest(incoming)
            self.verify(staged)  # the copy, not only the source
            if trusted is not None:
                verify_bundle(
                    incoming,
                    trusted,
                    installed_release=self.release(new.name),
                    agent_version=__version__,
                )
        except (OSError, ModelError) as err:
            shutil.rmtree(incoming, ignore_errors=True)
            raise ModelError(f"{new.ref}: install failed, store unchanged: {err}") from err
        # The switch: every step is one rename, so a kill anywhere leaves a state that
        # ``recover`` turns into exactly the old or the new version.
        current = self.root / new.name
        previous = self._previous_dir(new.name)
        if current.exists():
            if previous.exists():
                trash = self.root / f".{new.name}.trash"
                shutil.rmtree(trash, ignore_errors=True)
                previous.rename(trash)
                _failpoint("trashed")
                shutil.rmtree(trash, ignore_errors=True)
            current.rename(previous)
            _fsync_dir(self.root)
            _failpoint("set_aside")
        incoming.rename(current)
        _fsync_dir(self.root)
        _failpoint("activated")
        _LOGGER.info("model %s installed into %s", new.ref, current)
        return read_manifest(current)

    def _check_compatible(self, old: Manifest, new: Manifest, session: Session) -> None:
        try:
            self.verify(old)
            current = open_session(old.path, old.runtime, RuntimeOptions(warmup=False))
        except EdgeAgentError as err:  # a broken installed version may be replaced
            _LOGGER.warning("installed %s is unusable (%s); not comparing", old.ref, err)
            return
        if not (
            _compatible(current.inputs, session.inputs)
            and _compatible(current.outputs, session.outputs)
        ):
            raise ModelError(
                f"{new.ref}: inputs/outputs {_io_text(session)} differ from the installed "
                f"{old.ref} ({_io_text(current)}); store unchanged (use --force to install)"
            )

    # -- an update waiting for its health window -------------------------------------

    @property
    def _pending_path(self) -> Path:
        return self.root / ".pending.json"

    def mark_pending(self, name: str) -> None:
        """``name`` was just installed: it must prove itself over the next starts."""
        _write_atomic(self._pending_path, json.dumps({"name": name, "starts": 0}))

    def pending(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self._pending_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) and isinstance(data.get("name"), str) else None

    def start_attempt(self, max_failed_starts: int) -> str | None:
        """Call once per agent start, before any model loads. Counts this start against the
        pending update; after ``max_failed_starts`` starts that never committed, rolls it back
        and returns its name."""
        data = self.pending()
        if data is None:
            return None
        starts = int(data.get("starts", 0)) + 1
        name = str(data["name"])
        if starts <= max_failed_starts:
            _write_atomic(self._pending_path, json.dumps({"name": name, "starts": starts}))
            _LOGGER.info("model %s: start %d with the update pending", name, starts)
            return None
        _LOGGER.error(
            "model %s: %d starts without a healthy run since its update; rolling back",
            name,
            starts - 1,
        )
        try:
            self.rollback(name)
        except ModelError as err:  # nothing to go back to: keep what is there, say so
            _LOGGER.error(
                "model %s: cannot roll back (%s); keeping the installed version", name, err
            )
            return None
        finally:
            self._pending_path.unlink(missing_ok=True)
            _fsync_dir(self.root)
        return name

    def commit(self) -> str | None:
        """The pending update ran healthy: keep it. Returns its name (None: nothing pending)."""
        data = self.pending()
        if data is None:
            return None
        self._pending_path.unlink(missing_ok=True)
        _fsync_dir(self.root)
        _LOGGER.info("model %s: update committed after a healthy run", data["name"])
        return str(data["name"])

    def release(self, name: str) -> int | None:
        """The installed release counter of ``name`` (0 for a bundle without one), None when
        nothing is installed."""
        path = self.root / name / "manifest.json"
        if not path.is_file():
            return None
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("release", 0)
        except (OSError, ValueError):
            return 0
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    def rollback(self, name: str) -> Manifest:
        """Make the version that the last install replaced active again (and vice versa)."""
        with _locked(self.root):
            return self._rollback(name)

    def _rollback(self, name: str) -> Manifest:
        previous = self._previous_dir(name)
        old = self.previous(name)
        if old is None:
            raise ModelError(f"model {name!r}: no previous version to roll back to")
        self.verify(old)
        current = self.root / name
        swap = self.root / f".{name}.swap"
        shutil.rmtree(swap, ignore_errors=True)
        if current.exists():
            current.rename(swap)
            _failpoint("rollback_aside")
        previous.rename(current)
        _failpoint("rollback_active")
        if swap.exists():
            swap.rename(previous)
        _fsync_dir(self.root)
        _LOGGER.info("model %s rolled back to %s", name, old.ref)
        return read_manifest(current)


def _warmup_text(session: Session) -> str:
    ms = getattr(session, "warmup_ms", None)
    return f"warm-up {ms:.1f} ms" if ms is not None else "no warm-up"


def _io_text(session: Session) -> str:
    def one(t: TensorSpec) -> str:
        return f"{t.name}{list(t.shape)}:{t.dtype}"

    ins = ", ".join(one(t) for t in session.inputs)
    outs = ", ".join(one(t) for t in session.outputs)
    return f"{ins} -> {outs}"


def _compatible(old: list[TensorSpec], new: list[TensorSpec]) -> bool:
    return [(t.name, t.dtype, t.shape) for t in old] == [(t.name, t.dtype, t.shape) for t in new]
