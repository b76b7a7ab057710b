"""A hub's NATS connection over TLS with a client certificate, against a real ``nats-server``
that verifies it: the hub with its certificate publishes its events; a hub without one, or
one trusting another CA, is refused and says so — and its events wait in its journal."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import subprocess
from pathlib import Path

import pytest
from federation_config import hub_config
from nabat.events import Event
from nabat.testing import eventually, load_config_text, run_hub


def _name(text: str):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def _pair(directory: Path, stem: str, subject: str, issuer=None, *, ca: bool = False):
    """A key and certificate (PEM files ``<stem>.key``, ``<stem>.pem``), signed by
    ``issuer`` (key, cert) or self-signed."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    signer_key, signer = issuer if issuer else (key, None)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(signer.subject if signer else _name(subject))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    (directory / f"{stem}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (directory / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key, cert


@pytest.fixture
def tls_nats(tmp_path, nats_server_binary):
    """A JetStream nats-server on a free port that requires TLS and a client certificate
    signed by its CA."""
    from nabat.testing import free_port

    pki = tmp_path / "pki"
    pki.mkdir()
    ca = _pair(pki, "ca", "Nabat test CA", ca=True)
    _pair(pki, "server", "nats", ca)
    _pair(pki, "client", "site-a", ca)
    _pair(pki, "other-ca", "Another CA", ca=True)
    port = free_port()
    conf = tmp_path / "tls.conf"
    conf.write_text(
        f"""
listen: 127.0.0.1:{port}
jetstream {{ domain: site-a, store_dir: "{tmp_path / "store"}", max_mem: 64MB, max_file: 256MB }}
tls {{
  cert_file: "{pki / "server.pem"}"
  key_file: "{pki / "server.key"}"
  ca_file: "{pki / "ca.pem"}"
  verify: true
  timeout: 2
}}
"""
    )
    proc = subprocess.Popen(
        [nats_server_binary, "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "tls.log").open("wb"),
    )
    try:
        yield port, pki
    finally:
        proc.terminate()
        proc.wait(10)


def _config(port: int, pki: Path, *, cert: bool = True, ca: str = "ca") -> str:
    client = (
        f'tls_cert = "{pki / "client.pem"}"\ntls_key = "{pki / "client.key"}"\n' if cert else ""
    )
    return hub_config(
        name="district",
        site="site-a",
        servers=f"tls://127.0.0.1:{port}",
        federation=f'up = ["camera.health.>"]\ntls_ca = "{pki / (ca + ".pem")}"\n{client}',
    )


async def _failed(hub, n: int) -> bool:
    await asyncio.sleep(0)
    return hub.uplink.connection.failures >= n


async def _published(hub, n: int) -> bool:
    await asyncio.sleep(0)
    return hub.uplink.published >= n


async def test_a_hub_connects_over_tls_with_its_certificate_and_others_are_refused(
    tmp_path, tls_nats
):
    port, pki = tls_nats
    event = Event(type="camera.health.offline", source="/test/tls", id="one", data={})
    (tmp_path / "good").mkdir()
    good = load_config_text(_config(port, pki), tmp_path / "good")
    async with run_hub(good) as hub:
        await hub.publish(event)
        await eventually(lambda: _published(hub, 1), timeout=20, what="published over TLS")
    for name, config in (
        ("no-cert", _config(port, pki, cert=False)),  # the server wants a client certificate
        ("wrong-ca", _config(port, pki, ca="other-ca")),  # the server's cert is not trusted
    ):
        (tmp_path / name).mkdir()
        loaded = load_config_text(config, tmp_path / name)
        async with run_hub(loaded) as hub:
            await hub.publish(event)
            await eventually(lambda hub=hub: _failed(hub, 1), timeout=20, what=f"{name}: refused")
            assert "certificate" in hub.uplink.connection.last_error  # and it says why
            assert not hub.uplink.connection.connected
            assert hub.uplink.published == 0
            assert await hub.journal.get("/test/tls", "one") is not None  # kept, waiting
