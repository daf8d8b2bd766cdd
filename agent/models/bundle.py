"""Signed model bundles: Ed25519 over the manifest, which lists every file's sha256 and size.

A bundle is a folder: the model file(s), ``manifest.json`` and ``manifest.sig``. The manifest
adds to the store's keys:

* ``release``: an integer release counter; an update must be strictly newer than the
  installed one (``version`` stays a human label).
* ``files``: ``{name: {"sha256": …, "size": …}}`` for every other file of the bundle.
* ``min_agent_version`` (optional): the oldest agent that can run it.
* ``expires`` (optional): ISO 8601 UTC; an expired bundle is refused.

``manifest.sig`` is JSON ``{"alg": "ed25519", "key_id": …, "signature": base64}`` over the
exact bytes of ``manifest.json``. The trust store is ``models.trusted_keys`` (base64 raw
Ed25519 public keys); an empty trust store accepts nothing. Verification reads the signature
first and nothing else before it holds, then the files, then the release, expiry and agent
version (``verify_bundle``); each refusal has a code (``BundleRejected.code``).

Keys and signatures come from the ``cryptography`` package (a well-kept library; no
hand-written crypto).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from agent.errors import ModelError

_LOGGER = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ALG = "ed25519"


class BundleRejected(ModelError):
    """A bundle failed verification; ``code`` names why (stable, for MQTT replies)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} [{code}]")
        self.code = code


def key_id(public: bytes) -> str:
    return hashlib.sha256(public).hexdigest()[:16]


def parse_public_key(text: str) -> bytes:
    """A trust-store entry: base64 of the 32-byte raw Ed25519 public key."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError(f"not base64: {err}") from err
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True)
class KeyPair:
    private_pem: bytes
    public: bytes  # 32 raw bytes

    @property
    def public_b64(self) -> str:
        return base64.b64encode(self.public).decode("ascii")


def generate_key() -> KeyPair:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return KeyPair(pem, public)


def write_key(pair: KeyPair, path: Path) -> None:
    """The private key, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pair.private_pem)


def load_key(path: Path) -> Any:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read signing key {path}: {err}") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise ModelError(f"{path} is not an Ed25519 private key")
    return key


def _digest(path: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _payload_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and p.name not in (MANIFEST, SIGNATURE)
    )


def sign_bundle(
    folder: Path,
    key_path: Path,
    *,
    release: int | None = None,
    expires: datetime | None = None,
    min_agent_version: str | None = None,
) -> dict[str, Any]:
    """List every file in the manifest, set the release, and sign the manifest's bytes.

    ``release`` defaults to the manifest's own plus one (1 for a bundle that has none).
    """
    from cryptography.hazmat.primitives import serialization

    key = load_key(key_path)
    path = folder / MANIFEST
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ModelError(f"cannot read {path}: {err}") from err
    data["release"] = release if release is not None else int(data.get("release", 0)) + 1
    if expires is not None:
        data["expires"] = expires.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if min_agent_version is not None:
        data["min_agent_version"] = min_agent_version
    files = {}
    for name in _payload_files(folder):
        sha, size = _digest(folder / name)
        files[name] = {"sha256": sha, "size": size}
    data["files"] = files
    body = (json.dumps(data, indent=2) + "\n").encode("utf-8")
    path.write_bytes(body)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    sig = {
        "alg": ALG,
        "key_id": key_id(public),
        "signature": base64.b64encode(key.sign(body)).decode("ascii"),
    }
    (folder / SIGNATURE).write_text(json.dumps(sig, indent=2) + "\n", encoding="utf-8")
    return data


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def verify_bundle(
    folder: Path,
    trusted: Sequence[bytes],
    *,
    installed_release: int | None,
    agent_version: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The verified manifest of ``folder``, or :class:`BundleRejected`."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not trusted:
        raise BundleRejected(
            "empty_trust_store",
            "the trust store is empty and accepts nothing: add the signer's public key to "
            "models.trusted_keys (edge-agent models keygen prints one)",
        )
    sig_path = folder / SIGNATURE
    if not sig_path.is_file():
        raise BundleRejected("unsigned", f"{folder} has no {SIGNATURE}")
    try:
        sig = json.loads(sig_path.read_text(encoding="utf-8"))
        signature = base64.b64decode(sig["signature"], validate=True)
        kid = str(sig["key_id"])
        alg = sig.get("alg")
    except (OSError, ValueError, KeyError, TypeError, binascii.Error) as err:
        raise BundleRejected("bad_signature", f"{sig_path}: unreadable signature: {err}") from err
    if alg != ALG:
        raise BundleRejected("bad_signature", f"{sig_path}: algorithm {alg!r}, want {ALG}")
    keys = {key_id(k): k for k in trusted}
    if kid not in keys:
        raise BundleRejected("untrusted_key", f"signed by key {kid}, which is not trusted")
    try:
        body = (folder / MANIFEST).read_bytes()
    except OSError as err:
        raise BundleRejected("missing_file", f"cannot read {MANIFEST}: {err}") from err
    try:
        Ed25519PublicKey.from_public_bytes(keys[kid]).verify(signature, body)
    except InvalidSignature as err:
        raise BundleRejected(
            "bad_signature", f"{folder}: the manifest does not match its signature"
        ) from err
    data: dict[str, Any] = json.loads(body)
    files = data.get("files")
    if not isinstance(files, dict) or not files:
        raise BundleRejected("bad_manifest", "the signed manifest lists no files")
    for name, want in files.items():
        target = (folder / name).resolve()
        if folder.resolve() not in target.parents:
            raise BundleRejected("bad_manifest", f"file {name!r} lies outside the bundle")
        if not target.is_file():
            raise BundleRejected("missing_file", f"{name} is missing")
        sha, size = _digest(target)
        if size != want.get("size"):
            raise BundleRejected(
                "size_mismatch", f"{name}: {size} bytes, the manifest says {want.get('size')}"
            )
        if sha != want.get("sha256"):
            raise BundleRejected("hash_mismatch", f"{name}: sha256 does not match the manifest")
    extra = sorted(set(_payload_files(folder)) - set(files))
    if extra:
        raise BundleRejected("unexpected_file", f"files not in the manifest: {extra}")
    release = data.get("release")
    if not isinstance(release, int) or isinstance(release, bool) or release < 1:
        raise BundleRejected("bad_manifest", f"release must be a positive integer, got {release!r}")
    if installed_release is not None and release <= installed_release:
        raise BundleRejected(
            "version_not_newer",
            f"release {release} is not newer than the installed {installed_release}",
        )
    expires = data.get("expires")
    if expires is not None:
        try:
            when = datetime.fromisoformat(str(expires).replace("Z", "+00:00"))
        except ValueError as err:
            raise BundleRejected("bad_manifest", f"expires {expires!r}: {err}") from err
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        if when <= (now or datetime.now(UTC)):
            raise BundleRejected("expired", f"the bundle expired at {expires}")
    needs = data.get("min_agent_version")
    if needs is not None and _version_tuple(str(needs)) > _version_tuple(agent_version):
        raise BundleRejected(
            "incompatible_agent", f"needs edge-agent {needs} or newer, this is {agent_version}"
        )
    _LOGGER.info("bundle %s release %d verified (key %s)", data.get("name"), release, kid)
    return data
