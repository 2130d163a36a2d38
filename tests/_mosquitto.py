"""A real Mosquitto broker for tests, on free loopback ports, with its own generated config.

Four listeners: ``plain`` (anonymous), ``auth`` (password file + ACL), ``tls`` (test CA,
server certificate naming ``localhost`` only, password file + ACL) and ``mtls`` (client
certificate required; its CN ``axedge`` is the user name for the ACL). Users and passwords are in
``USERS``: ``axedge`` reads ``plant/#`` and ``spBv1.0/#`` and writes
``spBv1.0/+/NCMD/#``, ``uplink/#`` and ``spBv1.0/#``; ``sensor`` writes everything; ``reader``
reads ``public/#`` only.

If ``/usr/sbin/mosquitto`` (or ``mosquitto`` on PATH) is missing the fixture fails with a clear
message; it never skips silently. Import the fixtures into a test module with
``from tests._mosquitto import mosquitto  # noqa: F401``.
"""

from __future__ import annotations

import datetime as dt
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

USERS = {"axedge": "axedge-secret", "sensor": "sensor-secret", "reader": "reader-secret"}

ACL = """\
user axedge
topic read plant/#
topic read spBv1.0/#
topic readwrite uplink/#
topic write spBv1.0/#

user sensor
topic readwrite #

user reader
topic read public/#
"""


def find_mosquitto() -> str:
    for cand in ("/usr/sbin/mosquitto", shutil.which("mosquitto")):
        if cand and os.access(cand, os.X_OK):
            return cand
    pytest.fail("mosquitto is not installed: the MQTT tests need a real broker (apt-get install mosquitto)", pytrace=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca(dirpath: Path) -> dict[str, Path]:
    """A test CA, a server certificate for localhost / 127.0.0.1, and a client certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.timezone.utc)

    def key():
        return ec.generate_private_key(ec.SECP256R1())

    def write_key(k, p: Path) -> None:
        p.write_bytes(k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "axedge test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
          .not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(cn: str, san: list, usage) -> tuple:
        k = key()
        c = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(ca_name).public_key(k.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            c = c.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return k, c.sign(ca_key, hashes.SHA256())

    srv_key, srv = leaf("localhost", [x509.DNSName("localhost")],
                        ExtendedKeyUsageOID.SERVER_AUTH)
    cli_key, cli = leaf("axedge", [], ExtendedKeyUsageOID.CLIENT_AUTH)
    out = {n: dirpath / f"{n}.pem" for n in ("ca", "server", "server_key", "client", "client_key")}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out["server"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    out["client"].write_bytes(cli.public_bytes(serialization.Encoding.PEM))
    write_key(srv_key, out["server_key"])
    write_key(cli_key, out["client_key"])
    return out


@dataclass
class Mosquitto:
    """One broker process; ``restart()`` keeps ports and persisted sessions."""

    workdir: Path
    binary: str
    plain_port: int = 0
    auth_port: int = 0
    tls_port: int = 0
    mtls_port: int = 0
    certs: dict[str, Path] = field(default_factory=dict)
    proc: subprocess.Popen | None = None

    def write_config(self) -> Path:
        w = self.workdir
        pw = w / "passwd"
        pw.write_text("".join(f"{u}:{p}\n" for u, p in USERS.items()))
        if shutil.which("mosquitto_passwd"):
            subprocess.run(["mosquitto_passwd", "-U", str(pw)], check=True, capture_output=True)
        else:
            pytest.fail("mosquitto_passwd is missing: it is needed to hash the test password file", pytrace=False)
        (w / "acl").write_text(ACL)
        for p in (pw, w / "acl", self.certs["server_key"]):
            os.chmod(p, 0o600)
        conf = w / "mosquitto.conf"
        # started as root, mosquitto would switch to the 'mosquitto' user and lose access to its files
        user_line = f"user {pwd.getpwuid(os.getuid()).pw_name}" if os.getuid() == 0 else ""
        conf.write_text(f"""\
per_listener_settings true
{user_line}
persistence true
persistence_location {w}/
autosave_interval 0
max_inflight_messages 0
max_queued_messages 1000000
log_dest file {w}/mosquitto.log
log_type error
log_type warning
log_type notice

listener {self.plain_port} 127.0.0.1
allow_anonymous true

listener {self.auth_port} 127.0.0.1
allow_anonymous false
password_file {pw}
acl_file {w}/acl

listener {self.tls_port} 127.0.0.1
allow_anonymous false
password_file {pw}
acl_file {w}/acl
cafile {self.certs['ca']}
certfile {self.certs['server']}
keyfile {self.certs['server_key']}

listener {self.mtls_port} 127.0.0.1
cafile {self.certs['ca']}
certfile {self.certs['server']}
keyfile {self.certs['server_key']}
require_certificate true
use_identity_as_username true
acl_file {w}/acl
""")
        return conf

    def start(self) -> None:
        if not self.certs:
            self.certs = make_ca(self.workdir)
        for attempt in range(5):
            if not self.plain_port or attempt:
                self.plain_port, self.auth_port, self.tls_port, self.mtls_port = (free_port() for _ in range(4))
            conf = self.write_config()
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait_ready():
                return
            self.stop()
        log = (self.workdir / "mosquitto.log").read_text(errors="replace")[-2000:] if (self.workdir / "mosquitto.log").exists() else ""
        pytest.fail(f"mosquitto did not start: {log}", pytrace=False)

    def _wait_ready(self, timeout: float = 10.0) -> bool:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            if self.proc.poll() is not None:
                return False
            if all(_port_open(p) for p in (self.plain_port, self.auth_port, self.tls_port, self.mtls_port)):
                return True
            time.sleep(0.02)
        return False

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: mosquitto saves persisted sessions)."""
        p, self.proc = self.proc, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)

    def restart_on_same_ports(self) -> None:
        self.stop()
        conf = self.workdir / "mosquitto.conf"
        t_end = time.monotonic() + 10
        while True:  # the old socket may linger a moment
            self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if self._wait_ready():
                return
            self.stop()
            if time.monotonic() > t_end:
                pytest.fail("mosquitto did not restart on its ports", pytrace=False)
            time.sleep(0.2)


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory) -> Mosquitto:
    """A Mosquitto per test module (tests that restart it use their own, see ``mosquitto_factory``)."""
    b = Mosquitto(tmp_path_factory.mktemp("mosquitto"), find_mosquitto())
    b.start()
    yield b
    b.stop()


@pytest.fixture
def mosquitto_factory(tmp_path_factory):
    """Start private brokers (for restart / outage tests); all stopped at teardown."""
    started: list[Mosquitto] = []

    def make() -> Mosquitto:
        b = Mosquitto(tmp_path_factory.mktemp("mosquitto"), find_mosquitto())
        b.start()
        started.append(b)
        return b

    yield make
    for b in started:
        b.stop()
