"""Fetching a bundle over HTTP(S): size-capped, stall-timed, resumed, never spliced.

A bundle travels as an uncompressed tar of its folder. ``download`` writes ``<dest>.part``
and, after an interrupted transfer, asks for the rest with ``Range: bytes=N-``; it appends
only to a ``206`` whose ``Content-Range`` starts exactly at ``N`` (any other answer starts
over from byte 0), stops at ``max_bytes`` (an endless or oversized body), and gives up on a
connection that sends nothing for ``stall_s``. ``unpack`` extracts safely (no links, no paths
outside the folder). Plain ``urllib`` from the standard library does the HTTP.
"""

from __future__ import annotations

import http.client
import logging
import re
import shutil
import tarfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from agent.models.bundle import BundleRejected
from agent.models.store import sha256_of
from agent.sources.camera import redact

_LOGGER = logging.getLogger(__name__)

CHUNK = 64 * 1024
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


def download(
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    stall_s: float = 30.0,
    attempts: int = 5,
    sha256: str | None = None,
    total_s: float = 3600.0,
    progress: Callable[[int, int | None], None] = lambda done, total: None,
) -> Path:
    """``url`` into ``dest``; :class:`BundleRejected` with code ``download_failed``,
    ``too_large`` or ``hash_mismatch``."""
    if not url.startswith(("http://", "https://")):
        raise BundleRejected("download_failed", f"only http(s) URLs are fetched: {redact(url)}")
    part = dest.with_name(dest.name + ".part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    # A server that drips a byte just under the stall timeout must not hold an update forever.
    give_up_at = time.monotonic() + total_s
    for attempt in range(1, attempts + 1):
        try:
            if _fetch(
                url,
                part,
                max_bytes=max_bytes,
                stall_s=stall_s,
                progress=progress,
                give_up_at=give_up_at,
            ):
                break
            last = "the connection closed early"
        except BundleRejected:
            part.unlink(missing_ok=True)
            raise
        except (OSError, urllib.error.URLError, http.client.HTTPException) as err:
            last = str(err) or type(err).__name__  # timeouts are OSErrors; IncompleteRead not
        if time.monotonic() > give_up_at:
            part.unlink(missing_ok=True)
            raise BundleRejected(
                "download_failed", f"{redact(url)}: over {total_s:.0f} s in all; gave up"
            )
        _LOGGER.warning(
            "download %s: attempt %d/%d stopped (%s); resuming from byte %d",
            redact(url),
            attempt,
            attempts,
            last,
            part.stat().st_size if part.exists() else 0,
        )
    else:
        raise BundleRejected(
            "download_failed", f"{redact(url)}: gave up after {attempts} attempts: {last}"
        )
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256.lower():
            part.unlink(missing_ok=True)
            raise BundleRejected("hash_mismatch", f"{redact(url)}: sha256 {got}, expected {sha256}")
    part.replace(dest)
    return dest


def _fetch(
    url: str,
    part: Path,
    *,
    max_bytes: int,
    stall_s: float,
    progress: Callable[[int, int | None], None],
    give_up_at: float,
) -> bool:
    """One request; True when the whole body is in ``part``."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "edge-agent"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    with urllib.request.urlopen(request, timeout=stall_s) as resp:
        status = resp.status
        total: int | None = None
        if have and status == 206:
            m = _RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                # Never splice: an answer for other bytes than asked means start over.
                _LOGGER.warning(
                    "download %s: Content-Range %r does not continue at byte %d; restarting",
                    redact(url),
                    resp.headers.get("Content-Range"),
                    have,
                )
                part.unlink(missing_ok=True)
                return False
            total = int(m.group(3)) if m.group(3) != "*" else None
            mode = "ab"
        else:
            if status != 200:
                raise BundleRejected("download_failed", f"{redact(url)}: HTTP {status}")
            have, mode = 0, "wb"  # the whole body again
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise BundleRejected(
                "too_large", f"{redact(url)}: {total} bytes, the limit is {max_bytes}"
            )
        done = have
        with part.open(mode) as out:
            while chunk := resp.read(CHUNK):
                if time.monotonic() > give_up_at:
                    raise TimeoutError("the download's overall time limit passed")
                done += len(chunk)
                if done > max_bytes:
                    raise BundleRejected(
                        "too_large", f"{redact(url)}: more than {max_bytes} bytes; stopped"
                    )
                out.write(chunk)
                progress(done, total)
        return total is None or done == total


def unpack(archive: Path, folder: Path) -> Path:
    """Extract a bundle tar into ``folder``; the bundle is the folder holding manifest.json."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r:") as tar:
            for member in tar.getmembers():
                if not (member.isfile() or member.isdir()):
                    raise BundleRejected("bad_archive", f"{member.name}: links are not allowed")
            tar.extractall(folder, filter="data")
    except (tarfile.TarError, OSError) as err:
        raise BundleRejected("bad_archive", f"{archive.name}: {err}") from err
    found = sorted(p.parent for p in folder.rglob("manifest.json"))
    if len(found) != 1:
        raise BundleRejected(
            "bad_archive", f"{archive.name}: expected one manifest.json, got {len(found)}"
        )
    return found[0]
