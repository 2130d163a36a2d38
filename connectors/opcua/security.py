"""OPC UA session setup: endpoint selection, client certificate, server trust, user identity,
and translation of asyncua / socket errors into axedge's exception tree.

Server certificates are never trusted silently: the certificate offered by the chosen endpoint
must either match the pinned SHA-256 fingerprint or be one of the files in the trust directory.
A rejected certificate is copied to ``<certificate_dir>/rejected/`` so an operator can review it
and move it into the trust directory (the usual OPC UA PKI workflow).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import socket
from pathlib import Path
from typing import Any

from asyncua import Client, ua
from asyncua.crypto import security_policies, uacrypto
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from connectors.opcua.config import IdentityKind, OpcUaConfigBase, SecurityMode, SecurityPolicy
from edge_agent.errors import ConnectorError, ConnectorTimeout, NotConnected, ProtocolError, SecurityError

POLICY_CLASSES: dict[SecurityPolicy, type[security_policies.SecurityPolicy]] = {
    SecurityPolicy.basic256sha256: security_policies.SecurityPolicyBasic256Sha256,
    SecurityPolicy.aes128_sha256_rsaoaep: security_policies.SecurityPolicyAes128Sha256RsaOaep,
    SecurityPolicy.aes256_sha256_rsapss: security_policies.SecurityPolicyAes256Sha256RsaPss,
}
_MODES = {
    SecurityMode.none: ua.MessageSecurityMode.None_,
    SecurityMode.sign: ua.MessageSecurityMode.Sign,
    SecurityMode.sign_and_encrypt: ua.MessageSecurityMode.SignAndEncrypt,
}
_IDENTITY_CODES = {
    ua.StatusCodes.BadIdentityTokenInvalid,
    ua.StatusCodes.BadIdentityTokenRejected,
    ua.StatusCodes.BadUserAccessDenied,
    ua.StatusCodes.BadUserSignatureInvalid,
}
_CERT_CODES = {
    ua.StatusCodes.BadCertificateUntrusted,
    ua.StatusCodes.BadCertificateInvalid,
    ua.StatusCodes.BadSecurityChecksFailed,
    ua.StatusCodes.BadCertificateUriInvalid,
    ua.StatusCodes.BadCertificateTimeInvalid,
    ua.StatusCodes.BadCertificateRevoked,
    ua.StatusCodes.BadSecurityPolicyRejected,
}


class _NoSecretsFilter(logging.Filter):
    """asyncua logs every request at DEBUG, including ActivateSession with the user's password
    (plain inside an encrypted channel). Secrets are never logged: drop those records."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not any(type(a).__name__ in ("ActivateSessionRequest", "ActivateSessionParameters") for a in args)


def install_log_filter() -> None:
    """Idempotent: attach the filter to asyncua's request logger."""
    lg = logging.getLogger("asyncua.client.ua_client.UASocketProtocol")
    if not any(isinstance(f, _NoSecretsFilter) for f in lg.filters):
        lg.addFilter(_NoSecretsFilter())


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as lowercase hex (the form ``server_fingerprint_sha256`` takes)."""
    return hashlib.sha256(der).hexdigest()


def _load_der(path: Path) -> bytes | None:
    data = path.read_bytes()
    try:
        if b"-----BEGIN CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_bytes(uacrypto.serialization.Encoding.DER)
        return x509.load_der_x509_certificate(data).public_bytes(uacrypto.serialization.Encoding.DER)
    except ValueError:
        return None


def trusted(der: bytes, trust_dir: Path | None, pinned: str | None) -> bool:
    """True when ``der`` matches the pinned fingerprint or a certificate file in ``trust_dir``."""
    if pinned is not None and fingerprint(der) == pinned:
        return True
    if trust_dir is not None and trust_dir.is_dir():
        for p in sorted(trust_dir.iterdir()):
            if p.is_file() and p.suffix.lower() in (".der", ".pem", ".crt", ".cer") and _load_der(p) == der:
                return True
    return False


def certificate_dir(cfg: OpcUaConfigBase, state_dir: Path | None) -> Path:
    if cfg.security.certificate_dir is not None:
        return cfg.security.certificate_dir
    base = state_dir if state_dir is not None else Path("axedge-state")
    return base / "opcua-pki"


async def ensure_client_certificate(client: Client, cert_dir: Path) -> tuple[Path, Path]:
    """The client's application instance certificate, generated once into ``cert_dir``."""
    cert, key = cert_dir / "client_cert.der", cert_dir / "client_key.pem"
    await client.setup_self_signed_certificate(
        key, cert, subject_attrs={"organizationName": "axedge"},
        extended=[ExtendedKeyUsageOID.CLIENT_AUTH, ExtendedKeyUsageOID.SERVER_AUTH],
    )
    return cert, key


def _first_cert(der_chain: bytes) -> bytes:
    """The leading certificate of a DER chain (servers may send their chain concatenated)."""
    if len(der_chain) < 4 or der_chain[0] != 0x30:
        return der_chain
    n = der_chain[1]
    if n < 0x80:
        return der_chain[: 2 + n]
    k = n & 0x7F
    return der_chain[: 2 + k + int.from_bytes(der_chain[2 : 2 + k], "big")]


def _pick_endpoint(endpoints: list[ua.EndpointDescription], cfg: OpcUaConfigBase) -> ua.EndpointDescription:
    mode = _MODES[cfg.security.mode]
    uri = security_policies.SecurityPolicyNone.URI if mode == ua.MessageSecurityMode.None_ else POLICY_CLASSES[cfg.security.policy].URI
    for ep in endpoints:
        if ep.SecurityMode == mode and ep.SecurityPolicyUri == uri:
            return ep
    offered = sorted({f"{ep.SecurityMode.name.rstrip('_')}/{ep.SecurityPolicyUri.rsplit('#', 1)[-1]}" for ep in endpoints})
    raise SecurityError(
        f"{cfg.endpoint}: no endpoint with security {cfg.security.mode.value}/"
        f"{cfg.security.policy.value if mode != ua.MessageSecurityMode.None_ else 'None'}",
        hint=f"the server offers: {', '.join(offered) or 'nothing'}",
    )


def _token_offered(ep: ua.EndpointDescription, kind: IdentityKind) -> bool:
    want = {
        IdentityKind.anonymous: ua.UserTokenType.Anonymous,
        IdentityKind.username: ua.UserTokenType.UserName,
        IdentityKind.certificate: ua.UserTokenType.Certificate,
    }[kind]
    return any(t.TokenType == want for t in ep.UserIdentityTokens or [])


async def configure(client: Client, cfg: OpcUaConfigBase, state_dir: Path | None) -> None:
    """Apply security and identity to a fresh ``Client`` (before ``connect``)."""
    install_log_filter()
    client.application_uri = cfg.security.application_uri
    client.name = client.description = f"axedge {cfg.id}"
    client.session_timeout = int(cfg.session_timeout_secs * 1000)
    endpoints = await translate(client.connect_and_get_server_endpoints(), cfg.endpoint, cfg.request_timeout_secs)
    ep = _pick_endpoint(endpoints, cfg)
    if not _token_offered(ep, cfg.identity.kind):
        raise SecurityError(
            f"{cfg.endpoint}: the {cfg.security.mode.value} endpoint does not accept {cfg.identity.kind.value} identities",
            hint="choose another identity kind or security mode",
        )
    if cfg.security.mode is not SecurityMode.none:
        server_der = _first_cert(ep.ServerCertificate or b"")
        if not server_der:
            raise SecurityError(f"{cfg.endpoint}: the secure endpoint presents no server certificate")
        cert_dir = certificate_dir(cfg, state_dir)
        if not trusted(server_der, cfg.security.trust_dir, cfg.security.server_fingerprint_sha256):
            rejected = cert_dir / "rejected"
            rejected.mkdir(parents=True, exist_ok=True)
            fp = fingerprint(server_der)
            (rejected / f"{fp[:16]}.der").write_bytes(server_der)
            raise SecurityError(
                f"{cfg.endpoint}: server certificate is not trusted (sha256 {fp})",
                hint=f"check it, then copy {rejected / (fp[:16] + '.der')} into the trust_dir "
                "or set server_fingerprint_sha256",
            )
        cert, key = await ensure_client_certificate(client, cert_dir)
        await client.set_security(
            POLICY_CLASSES[cfg.security.policy], str(cert), str(key),
            server_certificate=server_der, mode=_MODES[cfg.security.mode],
        )
    ident = cfg.identity
    if ident.kind is IdentityKind.username:
        client.set_user(ident.username or "")
        if ident.password is not None:
            client.set_password(ident.password.get_secret_value())
    elif ident.kind is IdentityKind.certificate:
        await client.load_client_certificate(str(ident.certificate))
        await client.load_private_key(ident.private_key)


async def translate(aw, endpoint: str, timeout: float, what: str = "request") -> Any:
    """Await ``aw`` with a timeout, translating library errors at the boundary."""
    try:
        return await asyncio.wait_for(aw, timeout)
    except ConnectorError:
        raise
    except (TimeoutError, asyncio.TimeoutError) as exc:
        raise ConnectorTimeout(f"{endpoint}: {what} timed out after {timeout:g} s") from exc
    except ua.UaStatusCodeError as exc:
        raise status_error(exc.code, endpoint, what) from exc
    except (ConnectionError, OSError, socket.gaierror) as exc:
        raise NotConnected(f"{endpoint}: {what} failed: {exc}") from exc
    except ua.UaError as exc:
        raise ProtocolError(f"{endpoint}: {what} failed: {exc}") from exc


def status_error(code: int, endpoint: str, what: str) -> ConnectorError:
    """The axedge error for a service-level OPC UA status code."""
    name = ua.StatusCode(code).name
    if code in _IDENTITY_CODES:
        return SecurityError(f"{endpoint}: user identity rejected by the server ({name})", hint="check identity settings and password")
    if code in _CERT_CODES:
        return SecurityError(
            f"{endpoint}: the server rejected the secure channel ({name})",
            hint="the server must trust axedge's client certificate (see the connector's certificate_dir)",
        )
    return ProtocolError(f"{endpoint}: {what} failed ({name})")
