"""Config of the ``mqtt`` connector (MQTT 3.1.1 / 5, JSON, plain numbers and Sparkplug B).

Plain pydantic, no paho import: the config layer stays light.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from connectors.mqtt.topics import TopicTemplate
from edge_agent.config.base import AssetPath, ConnectorConfigBase, SignalConfigBase, StrictModel
from edge_agent.core.channel import WhenFull


_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


class MqttVersion(str, Enum):
    v311 = "3.1.1"
    v5 = "5"


class SessionKind(str, Enum):
    """persistent: the broker keeps the subscription and queued QoS 1/2 messages while we are
    away (clean_session=0 / session expiry); clean: start fresh on every connect."""

    persistent = "persistent"
    clean = "clean"


class TlsVerify(str, Enum):
    """full: CA chain and host name; ca_only: CA chain only (devices with IP-less certs); none:
    no verification (lab only, logged as a warning)."""

    full = "full"
    ca_only = "ca_only"
    none = "none"


class TlsConfig(StrictModel):
    ca_file: Path | None = Field(None, description="CA bundle (PEM) that signed the broker's certificate; system CAs if unset")
    cert_file: Path | None = Field(None, description="Client certificate (PEM) for mutual TLS")
    key_file: Path | None = Field(None, description="Client private key (PEM) for mutual TLS")
    key_password: SecretStr | None = Field(None, description="Password of the client key, e.g. ${env:MQTT_KEY_PASSWORD}")
    verify: TlsVerify = Field(TlsVerify.full, description="full | ca_only | none")

    @model_validator(mode="after")
    def _pair(self) -> TlsConfig:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class BrokerConfig(StrictModel):
    """How to reach and log in to a broker (shared by the connector and the uplink sink)."""

    host: str = Field("127.0.0.1", description="Broker host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="TCP port; default 1883, or 8883 with tls")
    protocol: MqttVersion = Field(MqttVersion.v311, description="MQTT protocol version: 3.1.1 | 5")
    client_id: str | None = Field(None, max_length=128, description="Client id; default axedge-<section id>. Must be stable for persistent sessions")
    username: str | None = Field(None, description="User name")
    password: SecretStr | None = Field(None, description="Password, e.g. ${env:MQTT_PASSWORD}; never logged")
    tls: TlsConfig | None = Field(None, description="TLS settings; unset = plain TCP")
    keepalive_secs: int = Field(30, ge=5, le=3600, description="MQTT keep-alive interval")
    connect_timeout_secs: float = Field(10.0, gt=0, le=300, description="Time allowed for CONNECT/CONNACK and SUBACK")
    session: SessionKind = Field(SessionKind.persistent, description="persistent | clean")
    session_expiry_secs: int = Field(86400, ge=0, description="MQTT 5: how long the broker keeps a persistent session")

    @property
    def effective_port(self) -> int:
        return self.port or (8883 if self.tls is not None else 1883)


class PayloadFormat(str, Enum):
    json = "json"
    plain = "plain"  # the payload is a number (or text) as UTF-8
    sparkplug_b = "sparkplug_b"


class TimestampFormat(str, Enum):
    """auto: numbers by magnitude (s, ms, us or ns since the epoch), strings as ISO 8601."""

    auto = "auto"
    epoch_s = "epoch_s"
    epoch_ms = "epoch_ms"
    epoch_us = "epoch_us"
    epoch_ns = "epoch_ns"
    iso8601 = "iso8601"


class JsonShape(str, Enum):
    """auto: a number -> one value; an object with ``value_path`` -> one sample; another object ->
    one signal per numeric member; an array -> several samples of the topic's signal."""

    auto = "auto"
    value = "value"
    object = "object"
    samples = "samples"


class ValueKind(str, Enum):
    number = "number"  # strings that are not numbers are quarantined as wrong_type
    text = "text"  # values kept as text (value_text column)


class JsonOptions(StrictModel):
    shape: JsonShape = Field(JsonShape.auto, description="auto | value | object | samples")
    value_path: str = Field("value", description="Dotted path of the value in an object, e.g. data.v")
    timestamp_path: str | None = Field("timestamp", description="Dotted path of the source timestamp (receive time if absent)")
    timestamp_format: TimestampFormat = Field(TimestampFormat.auto, description="auto | epoch_s | epoch_ms | epoch_us | epoch_ns | iso8601")
    quality_path: str | None = Field("quality", description="Dotted path of a quality: OPC UA status code, 'good'/'uncertain'/'bad', or boolean")
    samples_path: str | None = Field(None, description="Dotted path of the array of samples inside an object (shape samples)")


class TopicSignal(SignalConfigBase):
    """One exact topic mapped to one signal."""

    topic: str = Field(description="Exact topic (no wildcards)")


class Subscription(StrictModel):
    """A topic filter or template and how to read its messages."""

    topic: str = Field(
        description="Topic template with {variables} for single levels (plant/{line}/{asset}/{signal}) or a plain filter with + and #",
        examples=["plant/{line}/{asset}/{signal}", "spBv1.0/{group}/#"],
    )
    format: PayloadFormat = Field(PayloadFormat.json, description="json | plain | sparkplug_b")
    qos: Literal[0, 1, 2] = Field(1, description="Subscription QoS")
    asset: str | None = Field(
        None,
        description="Asset path template, e.g. plant1/{line}/{asset}; default: the connector asset followed by every "
        "variable except {signal} (Sparkplug: {group}/{node}[/{device}])",
    )
    signal: str | None = Field(None, description="Signal name template; default {signal} if the topic has it, else the last topic level")
    units: dict[str, str] = Field(default_factory=dict, description="Unit per signal name, e.g. {temperature: Cel}")
    value: ValueKind = Field(ValueKind.number, description="number | text")
    json_options: JsonOptions = Field(default_factory=JsonOptions, description="How to read JSON payloads (paths, shapes, timestamps)")


    @model_validator(mode="after")
    def _templates(self) -> Subscription:
        tpl = TopicTemplate.parse(self.topic)  # raises ValueError with the reason
        known = {"group", "node", "device"} if self.format is PayloadFormat.sparkplug_b else set(tpl.variables)
        for field_name in ("asset", "signal"):
            text = getattr(self, field_name)
            for name in _PLACEHOLDER.findall(text or ""):
                if name not in known:
                    raise ValueError(f"{field_name} template uses {{{name}}}, which the topic does not define "
                                     f"(available: {', '.join(sorted(known)) or 'none'})")
        return self


class SparkplugOptions(StrictModel):
    host_id: str | None = Field(None, description="Sparkplug 3 host application id: publish spBv1.0/STATE/<host_id> (online/offline)")
    rebirth: Literal["request", "never"] = Field(
        "request", description="request: send NCMD 'Node Control/Rebirth' on a missing birth, unknown alias or sequence gap"
    )
    rebirth_min_interval_secs: float = Field(5.0, ge=0, description="At most one rebirth request per edge node per interval")


class MqttConfig(ConnectorConfigBase):
    """Subscribe to an MQTT broker: JSON, plain numbers and Sparkplug B (as a host application)."""

    type: Literal["mqtt"]
    asset: AssetPath = Field("plant", description="Default asset path (prefix of discovered assets)")
    broker: BrokerConfig = Field(default_factory=BrokerConfig, description="Broker connection")
    subscriptions: list[Subscription] = Field(default_factory=list, description="Topic templates / filters")
    signals: list[TopicSignal] = Field(default_factory=list, description="Exact topics mapped to signals (plain or JSON one-value payloads)")
    signals_format: Literal["json", "plain"] = Field("json", description="Payload format of the 'signals' topics")
    signals_qos: Literal[0, 1, 2] = Field(1, description="QoS of the 'signals' topics")
    sparkplug: SparkplugOptions = Field(default_factory=SparkplugOptions, description="Sparkplug B host application settings")
    max_payload_bytes: int = Field(256 * 1024, ge=16, le=256 * 1024 * 1024, description="Larger payloads are quarantined (oversize)")
    max_signals: int = Field(100_000, ge=1, description="Cap on signals discovered at run time (topic flood guard); extra ones are quarantined")
    inbox_max_messages: int = Field(20_000, ge=10, description="Messages queued between the MQTT network thread and the decoder")
    when_full: WhenFull = Field(
        WhenFull.block,
        description="Inbox policy. block: stop reading the socket (the broker keeps QoS 1/2 messages); drop_newest / drop_oldest "
        "(QoS 0 only): drop and count",
    )
    batch_max_messages: int = Field(5000, ge=1, description="At most this many messages per emitted chunk")
    batch_linger_secs: float = Field(0.01, ge=0, le=1, description="Wait this long after the first message for more before "
                                     "decoding (fewer, larger chunks; adds at most this latency)")

    @model_validator(mode="after")
    def _check(self) -> MqttConfig:
        if not self.subscriptions and not self.signals:
            raise ValueError("declare 'subscriptions' or 'signals'")
        if self.when_full is not WhenFull.block:
            qos = [s.qos for s in self.subscriptions] + ([self.signals_qos] if self.signals else [])
            if any(q > 0 for q in qos):
                raise ValueError("when_full drop_newest/drop_oldest is only allowed when every subscription uses qos 0 "
                                 "(QoS 1/2 messages are acknowledged only after they are durable, never dropped)")
        return self

    def signal_configs(self) -> list[SignalConfigBase]:
        return list(self.signals)
