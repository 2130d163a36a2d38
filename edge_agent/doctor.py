"""``axedge doctor CONFIG``: check a gateway's configuration against the real plant.

For every connector unit (one Modbus device, one OPC UA server, one broker): reachable,
authenticated, security and certificates as configured, one sample read per declared signal, the
clock offset where the protocol carries server time (OPC UA ServerTimestamp); for every sink its
target; then disk space and permissions of the data and state directories. Prints a table with
what is wrong and how to fix it. Exit status 0 when nothing failed (warnings allowed), 1 otherwise.

Read-only like the agent: each unit is connected, polled once (poll-mode connectors) or listened
to for ``--listen-secs`` (OPC UA subscriptions, MQTT JSON topics), and closed. MQTT runs under
its own client id with a clean session and without Sparkplug host state, so a running agent's
persistent session is left alone; Sparkplug subscriptions are only connected (listening could
send rebirth requests), as is the uplink broker.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import stat
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dataset_builder.format import Quality
from edge_agent.errors import AxedgeError, ConfigError, ConnectorTimeout, NotConnected, SecurityError

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
_MAX_SIGNAL_ROWS = 20  # failing signals listed one per row, then summarised
_MIN_FREE_DATA = 1024**3


@dataclass
class Check:
    status: str
    component: str
    check: str
    detail: str
    fix: str = ""


# ---------------------------------------------------------------------------- connectors
def _classify(exc: BaseException) -> tuple[str, str]:
    """(check name, default fix) for a failed connect/read."""
    if isinstance(exc, SecurityError):
        return "security / login", "check credentials, security policy/mode and the trusted certificates"
    if isinstance(exc, NotConnected | ConnectorTimeout | TimeoutError | ConnectionError | OSError):
        return "reachable", "check address and port, that the device is powered and on this network, and firewalls"
    return "sample read", "check the signal addresses and data types against the device's documentation"


def _quality_name(code: int) -> str:
    try:
        return Quality(code).name
    except ValueError:
        return f"0x{code:08x}"


class _Collector:
    """What one unit emitted during the check (a real bounded channel would only add waiting)."""

    def __init__(self, max_rows: int = 2_000_000) -> None:
        self.chunks: list = []
        self.rows = 0
        self.max_rows = max_rows

    async def send(self, chunk) -> bool:
        if self.rows >= self.max_rows:
            return False
        self.chunks.append(chunk)
        self.rows += len(chunk)
        return True


def _best_quality(collector: _Collector) -> dict[int, int]:
    """Best quality per signal id over everything read (a good read wins over a bad one)."""
    best: dict[int, int] = {}
    for c in collector.chunks:
        ids = np.asarray(c.signal_id, dtype=np.int64)
        q = np.asarray(c.quality, dtype=np.int64)
        order = np.lexsort((q >> 30, ids))  # per id, lowest severity first
        ids_s, q_s = ids[order], q[order]
        first = np.r_[True, ids_s[1:] != ids_s[:-1]]
        for sid, qq in zip(ids_s[first].tolist(), q_s[first].tolist(), strict=True):
            cur = best.get(sid)
            if cur is None or (qq >> 30) < (cur >> 30):
                best[sid] = qq
    return best


async def opcua_clock_offset(ccfg: Any, state_dir: Path, timeout: float) -> float:
    """Server clock minus this gateway's clock (seconds): one read of Server_ServerStatus_CurrentTime
    (i=2258) in a session set up like the connector's, corrected by half the round trip."""
    from asyncua import Client, ua

    from connectors.opcua.security import configure

    client = Client(ccfg.endpoint, timeout=timeout)
    await configure(client, ccfg, state_dir)
    await asyncio.wait_for(client.connect(), timeout)
    try:
        t0 = time.time()
        server_now = await asyncio.wait_for(client.get_node(ua.NodeId(2258)).read_value(), timeout)
        t1 = time.time()
    finally:
        await client.disconnect()
    if server_now.tzinfo is None:
        server_now = server_now.replace(tzinfo=dt.UTC)
    return server_now.timestamp() - (t0 + t1) / 2


def _doctor_copy(ccfg: Any) -> Any:
    """MQTT: own client id and a clean session, never the agent's persistent session, and no
    Sparkplug host STATE messages (the running agent's host state stays as it is)."""
    broker = getattr(ccfg, "broker", None)
    if broker is None or not hasattr(broker, "session"):
        return ccfg
    from connectors.mqtt.config import SessionKind

    update: dict[str, Any] = {"broker": broker.model_copy(update={
        "session": SessionKind.clean, "client_id": f"axedge-doctor-{ccfg.id}-{os.getpid()}"})}
    sp = getattr(ccfg, "sparkplug", None)
    if sp is not None and getattr(sp, "host_id", None):
        update["sparkplug"] = sp.model_copy(update={"host_id": None})
    return ccfg.model_copy(update=update)


async def _check_unit(unit: Any, ccfg: Any, collector: _Collector, timeout: float, listen: float) -> list[Check]:
    name = unit.name
    mode = "probe"
    try:
        if ccfg.type == "mqtt" and _sparkplug(ccfg):
            await asyncio.wait_for(unit.probe(), timeout)  # listening could send rebirth requests: connect only
        elif unit.poll_interval_secs:
            await asyncio.wait_for(unit.probe(), timeout)
            mode = "poll"
        else:
            await asyncio.wait_for(unit.connect(), timeout)
            try:
                await asyncio.wait_for(unit.run(), listen)
            except TimeoutError:
                pass  # listened long enough
            finally:
                await unit.aclose()
            mode = "listen"
    except (AxedgeError, TimeoutError, OSError) as exc:
        what, fix = _classify(exc)
        if isinstance(exc, TimeoutError) and not isinstance(exc, AxedgeError):
            msg = f"no answer within {timeout:g}s"
        else:
            msg = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        hint = getattr(exc, "hint", None)
        return [Check(FAIL, name, what, msg, hint or fix)]
    out = [Check(OK, name, "reachable", "connected"),
           Check(OK, name, "security / login", _security_desc(ccfg))]
    if mode == "probe":
        out.append(Check(SKIP, name, "sample read", "streaming source: values arrive when published (see the status page)"))
    return out


def _sparkplug(ccfg: Any) -> bool:
    return any(getattr(getattr(sub, "format", None), "value", getattr(sub, "format", None)) == "sparkplug_b"
               for sub in getattr(ccfg, "subscriptions", None) or ())


def _security_desc(ccfg: Any) -> str:
    parts = []
    sec = getattr(ccfg, "security", None)
    if sec is not None:  # OPC UA: the session was opened with exactly this channel and identity
        mode = getattr(sec.mode, "value", sec.mode)
        parts.append(f"mode {mode}" + ("" if mode == "None" else f", policy {getattr(sec.policy, 'value', sec.policy)}"
                                       + (", server certificate pinned" if sec.server_fingerprint_sha256 else "")
                                       + (", server certificate in trust_dir" if sec.trust_dir else "")))
        ident = getattr(ccfg, "identity", None)
        if ident is not None:
            parts.append(f"identity {getattr(ident.kind, 'value', ident.kind)}" + (f" {ident.username}" if ident.username else ""))
    broker = getattr(ccfg, "broker", None)
    if broker is not None:
        parts.append("tls" if getattr(broker, "tls", None) else "plain tcp")
        if getattr(broker, "username", None):
            parts.append(f"user {broker.username}")
    return ", ".join(parts) or "as configured"


async def _clock_check(ccfg: Any, state_dir: Path, timeout: float, max_offset: float) -> list[Check]:
    if not ccfg.type.startswith("opcua"):
        return []  # Modbus and MQTT carry no server time
    try:
        off = await opcua_clock_offset(ccfg, state_dir, timeout)
    except (AxedgeError, TimeoutError, OSError, ValueError) as exc:
        return [Check(WARN, ccfg.id, "clock offset", f"could not read the server time: {exc}",
                      "the server must expose Server_ServerStatus_CurrentTime (i=2258)")]
    ok = abs(off) <= max_offset
    return [Check(OK if ok else WARN, ccfg.id, "clock offset", f"server clock {off:+.3f}s vs this gateway",
                  "" if ok else "sync both clocks (chrony/NTP on the gateway, NTP or PTP on the server): "
                                "source timestamps come from the server")]


def _signal_checks(ccfg: Any, catalog: Any, collector: _Collector, unit_ok: bool, sampled: bool) -> list[Check]:
    comp = ccfg.id
    out: list[Check] = []
    mine = [s for s in catalog.snapshot() if s.spec.connector == ccfg.id]
    best = _best_quality(collector)
    if not sampled:
        return out
    if not mine:
        if unit_ok and ccfg.type == "mqtt":
            out.append(Check(WARN, comp, "sample read", "subscribed, but no message arrived while listening",
                             "check that publishers are running and the topics match; a broker ACL that denies "
                             f"reading hides messages silently (user {getattr(ccfg.broker, 'username', None)!r})"))
        elif unit_ok:
            out.append(Check(WARN, comp, "sample read", "no signals declared or discovered",
                             "declare signals in the config or enable discovery"))
        else:
            out.append(Check(SKIP, comp, "sample read", "nothing read: no connection (see above)"))
        return out
    good = [s for s in mine if s.id in best and (best[s.id] >> 30) == 0]
    bad = [s for s in mine if s.id in best and (best[s.id] >> 30) != 0]
    missing = [s for s in mine if s.id not in best]
    streaming = ccfg.type == "mqtt"  # a publisher may simply not have sent within the window
    status = FAIL if bad or (missing and not streaming) else WARN if missing else OK
    out.append(Check(status, comp, "sample read", f"{len(good)}/{len(mine)} signals read with good quality"
                     + (f", {len(bad)} bad" if bad else "") + (f", {len(missing)} no value" if missing else "")))
    for s in (bad + missing)[:_MAX_SIGNAL_ROWS]:
        if s.id in best:
            detail = f"{s.key} ({s.spec.address}): {_quality_name(best[s.id])}"
            fix = "check the address, register type and data type; the device answered with an error for it"
        else:
            detail = f"{s.key} ({s.spec.address}): no value"
            fix = ("not published while listening (publisher idle, topic mismatch or ACL)" if streaming else
                   "the unit serving this signal failed (see above) or the signal is not read in one cycle")
        out.append(Check(WARN if streaming and s.id not in best else FAIL, comp, "signal", detail, fix))
    if len(bad) + len(missing) > _MAX_SIGNAL_ROWS:
        out.append(Check(FAIL, comp, "signal", f"... and {len(bad) + len(missing) - _MAX_SIGNAL_ROWS} more"))
    return out


def _connector_state_dir(state_dir: Path, cid: str) -> tuple[Path, Path | None]:
    """The connector's state dir as the agent uses it (its OPC UA client certificate is the one
    the server trusts, a rejected server certificate lands where the hint says), unless the doctor
    runs as root on another user's state dir or cannot write there: then a temporary one, so it
    never leaves files the agent's user cannot read. Returns (dir, temporary dir or None)."""
    path = state_dir / "connectors" / cid
    base = _nearest_existing(path.absolute())
    foreign = os.geteuid() == 0 and base.stat().st_uid != 0
    if not foreign and base.is_dir() and os.access(base, os.W_OK | os.X_OK):
        return path, None
    tmp = Path(tempfile.mkdtemp(prefix=f"axedge-doctor-{cid}-"))
    return tmp, tmp


async def check_connectors(cfg: Any, timeout: float, listen: float, max_offset: float) -> list[Check]:
    from connectors.base import ConnectorContext
    from connectors.registry import connector_factory
    from edge_agent.signals import SignalCatalog

    catalog = SignalCatalog()
    sections = []
    for ccfg in cfg.connectors:
        if not ccfg.enabled:
            continue
        dcfg = _doctor_copy(ccfg)
        collector = _Collector()
        state, temp = _connector_state_dir(Path(cfg.agent.state_dir), ccfg.id)
        ctx = ConnectorContext(ccfg.id, catalog, collector.send, state_dir=state)
        try:
            units = connector_factory(ccfg.type)(dcfg, ctx)
        except AxedgeError as exc:
            sections.append((ccfg, collector, state, temp, [], exc))
            continue
        sections.append((ccfg, collector, state, temp, units, None))

    async def one(ccfg, collector, state, units):
        results = await asyncio.gather(*(_check_unit(u, ccfg, collector, timeout, listen) for u in units))
        checks = [c for r in results for c in r]
        if any(c.status == OK for c in checks):
            checks += await _clock_check(ccfg, state, timeout, max_offset)
        return checks

    jobs = [one(c, col, st, units) for c, col, st, _, units, err in sections if err is None]
    unit_checks = iter(await asyncio.gather(*jobs))
    out: list[Check] = []
    for ccfg, collector, _state, temp, _units, err in sections:
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)
        if err is not None:
            out.append(Check(FAIL, ccfg.id, "build", str(err), getattr(err, "hint", None) or ""))
            continue
        checks = next(unit_checks)
        out.extend(checks)
        unit_ok = any(c.status == OK for c in checks)
        out.extend(_signal_checks(ccfg, catalog, collector, unit_ok, sampled=not _sparkplug(ccfg)))
    return out


# ---------------------------------------------------------------------------- sinks
async def check_sinks(cfg: Any, timeout: float) -> list[Check]:
    out = []
    for scfg in cfg.effective_sinks():
        if scfg.type == "parquet":
            out.append(Check(OK, f"sink {scfg.id}", "target", f"Parquet dataset under {cfg.agent.data_dir}/raw (directory checked below)"))
            continue
        broker = getattr(scfg, "broker", None)
        if broker is None:
            out.append(Check(SKIP, f"sink {scfg.id}", "target", f"no check for sink type {scfg.type}"))
            continue
        from connectors.mqtt.client import Session
        from connectors.mqtt.config import SessionKind

        b = broker.model_copy(update={"session": SessionKind.clean})
        session = Session(b, f"axedge-doctor-{scfg.id}-{os.getpid()}")
        try:
            await asyncio.wait_for(session.connect(), timeout)
        except (AxedgeError, TimeoutError, OSError) as exc:
            what, fix = _classify(exc)
            msg = getattr(exc, "message", None) or str(exc) or f"no answer within {timeout:g}s"
            out.append(Check(FAIL, f"sink {scfg.id}", what, msg, getattr(exc, "hint", None) or fix))
            continue
        await asyncio.to_thread(session.close)
        out.append(Check(OK, f"sink {scfg.id}", "reachable", f"{session.where}: connected"))
        out.append(Check(OK, f"sink {scfg.id}", "security / login", _security_desc(scfg)))
    return out


# ---------------------------------------------------------------------------- directories
def _nearest_existing(p: Path) -> Path:
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_dir(label: str, path: Path, need_bytes: int) -> list[Check]:
    comp = f"{label} dir"
    path = path.expanduser().absolute()
    base = _nearest_existing(path)
    if base != path and not base.is_dir():
        return [Check(FAIL, comp, "permissions", f"{path}: {base} is not a directory",
                      f"point agent.{label}_dir at a directory")]
    if base.is_dir():
        try:  # os.access is not enough (root, ACLs, read-only mounts): really write
            fd, tmp = tempfile.mkstemp(prefix=".axedge-doctor-", dir=base)
            os.close(fd)
            os.unlink(tmp)
        except OSError as exc:
            who = _whoami()
            return [Check(FAIL, comp, "permissions", f"{base} is not writable by {who}: {exc.strerror}",
                          f"chown -R {who} {path} (or set agent.{label}_dir to a writable path; with systemd list it in ReadWritePaths=)")]
    else:
        return [Check(FAIL, comp, "permissions", f"{path}: no existing parent", f"create {path}")]
    out = [Check(OK, comp, "permissions", f"{path} writable" + ("" if base == path else f" (will be created in {base})"))]
    mode = base.stat().st_mode
    if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
        out.append(Check(WARN, comp, "permissions", f"{base} is world-writable", f"chmod o-w {base}"))
    du = shutil.disk_usage(base)
    free_gib, need_gib = du.free / 1024**3, need_bytes / 1024**3
    if du.free < need_bytes:
        out.append(Check(FAIL, comp, "disk space", f"{free_gib:.1f} GiB free on {base}, {need_gib:.1f} GiB needed",
                         "free space, move the directory to a larger disk, or lower buffer.max_bytes"))
    else:
        out.append(Check(OK, comp, "disk space", f"{free_gib:.1f} GiB free ({du.free / du.total:.0%}), {need_gib:.1f} GiB needed"))
    return out


def _whoami() -> str:
    try:
        import pwd

        return pwd.getpwuid(os.geteuid()).pw_name
    except (KeyError, ImportError):
        return str(os.geteuid())


def check_dirs(cfg: Any) -> list[Check]:
    n_sinks = len(cfg.effective_sinks())
    buffer_need = int(cfg.buffer.max_bytes) * n_sinks if cfg.buffer.kind.value == "sqlite" else 0
    return (check_dir("data", Path(cfg.agent.data_dir), _MIN_FREE_DATA)
            + check_dir("state", Path(cfg.agent.state_dir), buffer_need))


# ---------------------------------------------------------------------------- report
def render(checks: list[Check], width: int = 100) -> str:
    w_comp = min(28, max([len("COMPONENT")] + [len(c.component) for c in checks]))
    w_check = max([len("CHECK")] + [len(c.check) for c in checks])
    lines = [f"{'STATUS':<6}  {'COMPONENT':<{w_comp}}  {'CHECK':<{w_check}}  DETAIL"]
    for c in checks:
        lines.append(f"{c.status:<6}  {c.component[:w_comp]:<{w_comp}}  {c.check:<{w_check}}  {c.detail}")
        if c.fix and c.status in (FAIL, WARN):
            lines.append(f"{'':<6}  {'':<{w_comp}}  {'':<{w_check}}  -> fix: {c.fix}")
    n_fail = sum(c.status == FAIL for c in checks)
    n_warn = sum(c.status == WARN for c in checks)
    lines.append("")
    lines.append(f"{n_fail} failed, {n_warn} warnings, {sum(c.status == OK for c in checks)} ok" if (n_fail or n_warn)
                 else f"all {sum(c.status == OK for c in checks)} checks ok")
    return "\n".join(lines)


async def run_checks(cfg: Any, *, timeout: float = 15.0, listen: float = 3.0, max_offset: float = 2.0) -> list[Check]:
    conns, sinks = await asyncio.gather(check_connectors(cfg, timeout, listen, max_offset), check_sinks(cfg, timeout))
    return conns + sinks + check_dirs(cfg)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="axedge doctor", description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="the agent's YAML config")
    p.add_argument("--timeout-secs", type=float, default=15.0, help="per device: connect and one read (default 15)")
    p.add_argument("--listen-secs", type=float, default=3.0, help="how long to listen to subscriptions (default 3)")
    p.add_argument("--max-clock-offset-secs", type=float, default=2.0,
                   help="warn above this server clock offset (default 2; servers update CurrentTime about once a second)")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    args = p.parse_args(argv)
    import logging

    logging.basicConfig(level=logging.CRITICAL)  # the table says it all; library chatter is noise here
    from edge_agent.config import load_config

    t0 = time.monotonic()
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        checks = [Check(FAIL, "config", "valid", line, "fix the configuration (axedge validate)")
                  for line in (exc.problems or [str(exc)])]
    else:
        checks = [Check(OK, "config", "valid", f"{args.config}: {len(cfg.connectors)} connectors, {len(cfg.effective_sinks())} sinks")]
        checks += asyncio.run(run_checks(cfg, timeout=args.timeout_secs, listen=args.listen_secs,
                                         max_offset=args.max_clock_offset_secs))
    if args.json:
        print(json.dumps({"ok": not any(c.status == FAIL for c in checks), "elapsed_secs": round(time.monotonic() - t0, 2),
                          "checks": [asdict(c) for c in checks]}, indent=2))
    else:
        print(render(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
