"""TLS and credentials against a real Mosquitto TLS listener (RELIABILITY.md M10, M12).

Certificates are made here with the openssl CLI; passwords are hashed with mosquitto_passwd.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.config.loader import load_config
from agent.config.mqtt import MqttConfig
from agent.errors import ConfigError
from agent.publish.broker import LocalBroker, TlsListener
from agent.publish.mqtt import MqttPublisher
from agent.publish.outbox import Outbox
from tests.test_mqtt_reliability import event

PASSWORD = "Tr0ub4dor&3-horse-staple"  # must never show up in a log line
WRONG_PASSWORD = "n0t-the-Password-41"


@dataclass(frozen=True)
class Pki:
    ca: Path
    other_ca: Path
    server_cert: Path
    server_key: Path
    misnamed_cert: Path  # signed by ca, for 'broker.example' only
    misnamed_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def _ca(d: Path, name: str) -> None:
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )


def _leaf(d: Path, name: str, ca: str, san: str) -> None:
    _openssl(
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        f"{name}.key",
        "-out",
        f"{name}.csr",
        "-subj",
        f"/CN={name}",
        cwd=d,
    )
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n", encoding="utf-8")
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        f"{ca}.crt",
        "-CAkey",
        f"{ca}.key",
        "-CAcreateserial",
        "-out",
        f"{name}.crt",
        "-days",
        "2",
        "-extfile",
        f"{name}.ext",
        cwd=d,
    )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    if shutil.which("openssl") is None:
        pytest.fail("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _leaf(d, "server", "ca", "IP:127.0.0.1,DNS:localhost")
    _leaf(d, "misnamed", "ca", "DNS:broker.example")
    _leaf(d, "client", "ca", "DNS:edge-agent")
    return Pki(
        d / "ca.crt",
        d / "other-ca.crt",
        d / "server.crt",
        d / "server.key",
        d / "misnamed.crt",
        d / "misnamed.key",
        d / "client.crt",
        d / "client.key",
    )


def _tls_broker(pki: Pki, *, misnamed: bool = False, mutual: bool = False) -> LocalBroker:
    cert, key = (
        (pki.misnamed_cert, pki.misnamed_key) if misnamed else (pki.server_cert, pki.server_key)
    )
    tls = TlsListener(pki.ca, cert, key, require_certificate=mutual)
    return LocalBroker(tls=tls, passwords={"agent": PASSWORD}).start()


def _cfg(b: LocalBroker, tls: dict[str, object], **kw: object) -> MqttConfig:
    return MqttConfig.model_validate(
        {"host": b.host, "port": b.port, "keepalive": 5, "username": "agent", "tls": tls, **kw}
    )


def _secret_texts(pki: Pki) -> list[str]:
    """The password, the wrong one, and every base64 line of the private keys."""
    texts = [PASSWORD, WRONG_PASSWORD]
    for key in (pki.client_key, pki.server_key):
        texts += [
            line for line in key.read_text().splitlines() if line and not line.startswith("-")
        ]
    return texts


def _assert_no_secret(pki: Pki, *texts: str) -> None:
    for text in texts:
        for secret in _secret_texts(pki):
            assert secret not in text


def test_tls_mutual_and_password_file_delivers_and_logs_no_secret(
    pki: Pki, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pw = tmp_path / "mqtt_password"  # as systemd's LoadCredential= would provide it
    pw.write_text(PASSWORD + "\n", encoding="utf-8")
    b = _tls_broker(pki, mutual=True)
    tls = {
        "enabled": True,
        "ca_file": str(pki.ca),
        "cert_file": str(pki.client_cert),
        "key_file": str(pki.client_key),
    }
    pub = MqttPublisher(_cfg(b, tls, password_file=str(pw)), "s1", outbox=Outbox(None))
    try:
        pub.start(timeout=10)
        assert pub.connected
        pub.publish_event(event(1, "s1"))
        assert pub.flush(5)
        stats = json.dumps(pub.stats())
    finally:
        pub.close()
        b.stop()  # mosquitto's stdout is flushed when it exits
        log = b.log_text()
        b.close()
    assert "New client connected" in log and "u'agent'" in log
    lines = [r.getMessage() for r in caplog.records]
    assert any("Sending CONNECT" in line for line in lines)  # paho's own DEBUG lines captured
    _assert_no_secret(pki, caplog.text, *lines, stats)


def test_wrong_ca_fails_closed_with_one_error_and_backs_off(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    b = _tls_broker(pki)
    cfg = _cfg(b, {"enabled": True, "ca_file": str(pki.other_ca)}, password=PASSWORD)
    pub = MqttPublisher(cfg, "s2", outbox=Outbox(None))
    try:
        pub.start(timeout=3.5)
        connected, attempts = pub.connected, pub.attempts
    finally:
        pub.close()
        b.stop()  # mosquitto's stdout is flushed when it exits
        log = b.log_text()
        b.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    print(f"\nM10 wrong CA: {attempts} attempts in 3.5 s; error: {errors}")
    assert not connected
    assert len(errors) == 1 and "certificate verify failed" in errors[0], errors
    assert 2 <= attempts <= 4  # backs off: 0.5-1 s, then 1-2 s, ...
    assert "New client connected" not in log  # no plaintext (or any) session was made
    _assert_no_secret(pki, caplog.text)


def test_host_name_checked_unless_insecure(pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    b = _tls_broker(pki, misnamed=True)
    try:
        strict = MqttPublisher(
            _cfg(b, {"enabled": True, "ca_file": str(pki.ca)}, password=PASSWORD),
            "s3",
            outbox=Outbox(None),
        )
        strict.start(timeout=1.5)
        refused = not strict.connected
        strict.close()
        loose = MqttPublisher(
            _cfg(b, {"enabled": True, "ca_file": str(pki.ca), "insecure": True}, password=PASSWORD),
            "s3b",
            outbox=Outbox(None),
        )
        loose.start(timeout=5)
        accepted = loose.connected
        loose.close()
    finally:
        b.close()
    assert refused and accepted
    assert any("mismatch" in r.getMessage() for r in caplog.records)


def test_bad_password_from_env_one_error_never_echoed(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    b = _tls_broker(pki)
    conf = tmp_path / "agent.yaml"
    conf.write_text(
        f"device_id: s4\nmqtt:\n  host: {b.host}\n  port: {b.port}\n  keepalive: 5\n"
        f"  username: agent\n  tls:\n    enabled: true\n    ca_file: {pki.ca}\n",
        encoding="utf-8",
    )
    monkeypatch.setenv("EDGE_AGENT_MQTT_PASSWORD", WRONG_PASSWORD)
    cfg = load_config(conf)
    pub = MqttPublisher(cfg.mqtt, cfg.device_id, outbox=Outbox(None))
    try:
        pub.start(timeout=3.5)
        connected, attempts = pub.connected, pub.attempts
        stats = json.dumps(pub.stats())
    finally:
        pub.close()
        b.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    print(f"\nM10 bad password: {attempts} attempts in 3.5 s; error: {errors}")
    assert not connected
    assert len(errors) == 1 and "refused the connection: Not authorized" in errors[0], errors
    assert 2 <= attempts <= 4
    _assert_no_secret(pki, caplog.text, stats, repr(cfg), str(cfg.mqtt))


def test_tls_files_without_enabled_are_rejected() -> None:
    with pytest.raises(ValueError, match="enabled is false"):
        MqttConfig.model_validate({"tls": {"ca_file": "/etc/ssl/ca.pem"}})


def test_unreadable_password_file_names_the_key_not_the_content(tmp_path: Path) -> None:
    cfg = MqttConfig(username="agent", password_file=tmp_path / "missing")
    with pytest.raises(ConfigError) as info:
        MqttPublisher(cfg, "s5")
    [line] = info.value.problems
    assert line.startswith("mqtt.password_file: cannot read")
