"""Config of the OPC UA connectors: ``opcua_subscription`` and ``opcua_polling``.

Plain pydantic, no asyncua import (CONVENTIONS 2: ``import connectors.registry`` stays light).
Nodes are addressed by NodeId with a namespace URI (``nsu=urn:x;s=Spindle.Speed``), by browse
path (``Objects/mt:Machines/MyMachine/Monitoring/Spindle/Override``, resolved at every connect),
or by numeric namespace index only with ``numeric_namespace: allow``.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from edge_agent.config.base import ConnectorConfigBase, DataType, SignalConfigBase, StrictModel

_ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,31}$")
_FINGERPRINT = re.compile(r"^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$")


class SecurityMode(str, Enum):
    none = "None"
    sign = "Sign"
    sign_and_encrypt = "SignAndEncrypt"


class SecurityPolicy(str, Enum):
    none = "None"
    basic256sha256 = "Basic256Sha256"
    aes128_sha256_rsaoaep = "Aes128_Sha256_RsaOaep"
    aes256_sha256_rsapss = "Aes256_Sha256_RsaPss"


class IdentityKind(str, Enum):
    anonymous = "anonymous"
    username = "username"
    certificate = "certificate"


class NumericNamespace(str, Enum):
    """Whether ``ns=<index>`` node ids are accepted (indices may change across server restarts)."""

    reject = "reject"
    allow = "allow"


class DeadbandType(str, Enum):
    none = "none"
    absolute = "absolute"
    percent = "percent"  # of the EURange span (the server needs EURange on the node)


class SecurityConfig(StrictModel):
    """Secure channel settings. With ``mode: None`` nothing else is needed."""

    mode: SecurityMode = Field(SecurityMode.none, description="None | Sign | SignAndEncrypt")
    policy: SecurityPolicy = Field(
        SecurityPolicy.basic256sha256,
        description="Basic256Sha256 | Aes128_Sha256_RsaOaep | Aes256_Sha256_RsaPss (ignored with mode None)",
    )
    certificate_dir: Path | None = Field(
        None,
        description="Where the client certificate and key live; generated once if missing. Default: <connector state dir>/opcua-pki",
    )
    application_uri: str = Field("urn:axedge:client", description="ApplicationUri written into the client certificate")
    trust_dir: Path | None = Field(
        None, description="Directory of trusted server certificates (.der / .pem): the server's certificate must be one of them"
    )
    server_fingerprint_sha256: str | None = Field(
        None, description="Pinned SHA-256 fingerprint of the server certificate (hex, colons optional)"
    )

    @field_validator("server_fingerprint_sha256")
    @classmethod
    def _fp(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not _FINGERPRINT.match(v.strip()):
            raise ValueError("must be 32 hex bytes (64 hex digits, colons optional)")
        return v.strip().replace(":", "").lower()

    @model_validator(mode="after")
    def _trust(self) -> SecurityConfig:
        if self.mode is SecurityMode.none:
            return self
        if self.policy is SecurityPolicy.none:
            raise ValueError(f"mode {self.mode.value} needs a security policy other than None")
        if self.trust_dir is None and self.server_fingerprint_sha256 is None:
            raise ValueError("a secure mode needs 'trust_dir' or 'server_fingerprint_sha256': server certificates are never trusted silently")
        return self


class IdentityConfig(StrictModel):
    """User identity presented when the session is activated."""

    kind: IdentityKind = Field(IdentityKind.anonymous, description="anonymous | username | certificate")
    username: str | None = Field(None, description="User name (kind: username)")
    password: SecretStr | None = Field(None, description="Password; use ${env:NAME} or ${file:PATH}, never plain text")
    certificate: Path | None = Field(None, description="User certificate (.der / .pem) (kind: certificate)")
    private_key: Path | None = Field(None, description="User private key (.pem) (kind: certificate)")

    @model_validator(mode="after")
    def _complete(self) -> IdentityConfig:
        if self.kind is IdentityKind.username and not self.username:
            raise ValueError("kind username needs 'username' (and usually 'password')")
        if self.kind is IdentityKind.certificate and (self.certificate is None or self.private_key is None):
            raise ValueError("kind certificate needs 'certificate' and 'private_key'")
        return self


class OpcUaNodeConfig(SignalConfigBase):
    """One variable to read. Give ``node_id`` or ``browse_path``."""

    node_id: str | None = Field(
        None, description="NodeId, preferably with namespace URI: 'nsu=urn:x;s=Speed' or 'nsu=urn:x;i=1001'"
    )
    browse_path: str | None = Field(
        None,
        description="Browse path from the Objects folder (or from '/Root'), '/'-separated browse names; "
        "a name may carry a namespace alias prefix 'alias:Name' (see 'namespaces'); unprefixed names match any namespace",
    )
    dtype: DataType | None = Field(None, description="Override the data type read from the server")
    sampling_interval_ms: float | None = Field(None, ge=0, description="Per-node sampling interval (subscription)")
    deadband_type: DeadbandType | None = Field(None, description="Per-node deadband type (subscription)")
    deadband_value: float | None = Field(None, ge=0, description="Per-node deadband value (subscription)")

    @model_validator(mode="after")
    def _address(self) -> OpcUaNodeConfig:
        if (self.node_id is None) == (self.browse_path is None):
            raise ValueError("give exactly one of 'node_id' or 'browse_path'")
        return self


class OpcUaConfigBase(ConnectorConfigBase):
    endpoint: str = Field(description="Server endpoint URL, e.g. opc.tcp://mill-01:4840", pattern=r"^opc\.tcp://")
    security: SecurityConfig = Field(default_factory=SecurityConfig)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)
    namespaces: dict[str, str] = Field(
        default_factory=dict, description="Aliases for namespace URIs used in browse paths: {mt: 'http://opcfoundation.org/UA/MachineTool/'}"
    )
    numeric_namespace: NumericNamespace = Field(
        NumericNamespace.reject, description="reject: node ids must use nsu=<uri> (ns=0 is always fine); allow: accept ns=<index>"
    )
    request_timeout_secs: float = Field(10.0, gt=0, le=600, description="Timeout of each OPC UA request")
    session_timeout_secs: float = Field(60.0, gt=0, le=86400, description="Requested session timeout")
    nodes: list[OpcUaNodeConfig] = Field(default_factory=list, description="Variables to read")

    @field_validator("namespaces")
    @classmethod
    def _aliases(cls, v: dict[str, str]) -> dict[str, str]:
        for k in v:
            if not _ALIAS.match(k):
                raise ValueError(f"namespace alias {k!r} must be a short identifier")
        return v

    @model_validator(mode="after")
    def _nodes(self) -> OpcUaConfigBase:
        if not self.nodes:
            raise ValueError("declare at least one entry under 'nodes' (axedge discover opcua writes them for you)")
        seen: set[tuple[str, str]] = set()
        for n in self.nodes:
            key = (n.asset or self.asset, n.name)
            if key in seen:
                raise ValueError(f"signal {key[0]}/{key[1]} is declared twice")
            seen.add(key)
        return self

    def signal_configs(self) -> list[SignalConfigBase]:
        return list(self.nodes)


class OpcUaSubscriptionConfig(OpcUaConfigBase):
    """Monitored items in one subscription: data-change notifications, batched into chunks."""

    type: Literal["opcua_subscription"]
    publishing_interval_ms: float = Field(500.0, gt=0, le=3_600_000, description="Subscription publishing interval")
    sampling_interval_ms: float = Field(250.0, ge=0, le=3_600_000, description="Default sampling interval of monitored items")
    queue_size: int = Field(10, ge=1, le=100_000, description="Server-side queue per monitored item (discard oldest)")
    deadband_type: DeadbandType = Field(DeadbandType.none, description="Default deadband: none | absolute | percent")
    deadband_value: float = Field(0.0, ge=0, description="Default deadband value")
    keepalive_count: int = Field(10, ge=1, le=10_000, description="Publishing intervals without data before the server sends a keep-alive")
    max_items_per_request: int = Field(
        500, ge=1, le=50_000, description="Monitored items created per CreateMonitoredItems request (chunking)"
    )
    silence_timeout_secs: float | None = Field(
        None, gt=0, description="No publish response (data or keep-alive) for this long: the session is dead; default 3x the keep-alive period + 5 s"
    )


class OpcUaPollingConfig(OpcUaConfigBase):
    """Batched Read of all nodes every ``poll_interval_secs``."""

    type: Literal["opcua_polling"]
    poll_interval_secs: float = Field(1.0, gt=0, le=86400, description="Seconds between reads")
    max_nodes_per_read: int = Field(
        0, ge=0, le=100_000, description="Nodes per Read request; 0 = the server's MaxNodesPerRead (or 1000 if it sets none)"
    )
