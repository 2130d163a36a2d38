"""The ``axedge`` command line.

Exit status: 0 success, 1 runtime failure, 2 bad configuration or usage.
Heavy modules are imported inside the sub-commands so ``axedge --help`` stays fast.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from pathlib import Path

from edge_agent import __version__

# external sub-command groups: name -> "module:function" taking argv
_FORWARDED = {
    "sim": {
        "casting-line": "hardware.casting_line:main",
        "machine-tool": "hardware.machine_tool:main",
        "sensors": "hardware.sensors:main",
        "broker": "hardware.broker:main",
    },
    "discover": {"opcua": "connectors.opcua.discover:main"},
}


def _err(msg: str) -> None:
    print(f"axedge: {msg}", file=sys.stderr)


def _load(path: str):
    from edge_agent.config import load_config

    return load_config(path)


def cmd_validate(args: argparse.Namespace) -> int:
    cfg = _load(args.config)
    n_sig = sum(len(c.signal_configs()) for c in cfg.connectors)
    print(f"{args.config}: OK ({len(cfg.connectors)} connectors, {n_sig} declared signals, {len(cfg.effective_sinks())} sinks)")
    if args.probe:
        return asyncio.run(_probe(cfg))
    return 0


async def _probe(cfg) -> int:
    from connectors.base import ConnectorContext
    from connectors.registry import connector_factory
    from edge_agent.core.channel import BoundedChannel
    from edge_agent.signals import SignalCatalog

    bad = 0
    catalog = SignalCatalog()
    for ccfg in cfg.connectors:
        ch = BoundedChannel(1_000_000, 10_000_000)

        async def send(chunk, _ch=ch):
            return _ch.send_nowait(chunk)

        ctx = ConnectorContext(ccfg.id, catalog, send, state_dir=Path(cfg.agent.state_dir) / "connectors" / ccfg.id)
        for unit in connector_factory(ccfg.type)(ccfg, ctx):
            try:
                await asyncio.wait_for(unit.probe(), 30)
                print(f"  {unit.name}: reachable, {ch.rows} values read")
            except Exception as exc:  # noqa: BLE001 - report every failure and go on
                bad += 1
                print(f"  {unit.name}: FAILED: {exc}")
    return 1 if bad else 0


def cmd_run(args: argparse.Namespace) -> int:
    import signal

    early: list[int] = []  # signals that arrive while the heavy modules load
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: early.append(s))

    from edge_agent.logs import setup_logging
    from edge_agent.runtime.agent import Agent

    cfg = _load(args.config)
    fmt = cfg.agent.log_format.value
    live = fmt == "auto" and sys.stderr.isatty() and not args.no_status
    setup_logging(cfg.agent.log_level, "json" if fmt == "json" else "text")
    holder = {"agent": Agent(cfg, config_path=Path(args.config))}

    def on_signal(s: int, _f=None) -> None:  # until the event loop takes over: stop in order, never die mid-write
        if s == signal.SIGHUP:
            holder["agent"].request_reload()
        else:
            holder["agent"].request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    for s in early:
        on_signal(s)

    async def main() -> int:
        t_end = None if args.duration_secs is None else asyncio.get_running_loop().time() + args.duration_secs
        total = {"received": 0, "committed": 0, "dropped": 0, "errors": 0, "elapsed_secs": 0.0}
        while True:  # one pass per config; SIGHUP with a valid file starts the next pass
            agent = holder["agent"]
            status = asyncio.create_task(_status_line(agent)) if live else None
            left = None if t_end is None else max(0.0, t_end - asyncio.get_running_loop().time())
            try:
                res = await agent.run(left, install_signals=True)
            finally:
                if status:
                    status.cancel()
            for k in ("received", "committed", "dropped", "errors"):
                total[k] += getattr(res, k)
            total["elapsed_secs"] = round(total["elapsed_secs"] + res.elapsed_secs, 2)
            total["connectors"] = res.connectors
            if agent.next_config is None:
                break
            from edge_agent.runtime import sdnotify

            try:
                sdnotify.notify("RELOADING=1")
            except OSError:
                pass  # not fatal: systemd only misses a status line
            holder["agent"] = Agent(agent.next_config, config_path=Path(args.config))
            total["reloads"] = total.get("reloads", 0) + 1
        print(json.dumps(total))
        return 0

    return asyncio.run(main())


async def _status_line(agent) -> None:
    await agent.started.wait()
    last, t_last = 0, asyncio.get_running_loop().time()
    while True:
        await asyncio.sleep(1.0)
        h = agent.health()
        now = asyncio.get_running_loop().time()
        rate = (h["received"] - last) / max(1e-9, now - t_last)
        last, t_last = h["received"], now
        states = " ".join(f"{k}:{v}" for k, v in h["connectors"].items())
        buf = sum(h["buffer_rows"].values())
        line = (f"\r{rate:>10,.0f} samples/s  committed {h['committed']:,}  buffer {buf:,} rows  "
                f"dropped {h['dropped']:,}  errors {h['errors']:,}  [{states}]")
        sys.stderr.write(line[:200].ljust(120))
        sys.stderr.flush()


def cmd_config_schema(args: argparse.Namespace) -> int:
    from edge_agent.config.models import AgentConfig

    text = json.dumps(AgentConfig.model_json_schema(), indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    else:
        print(text)
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    from edge_agent.config.reference import render_reference

    text = render_reference()
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    else:
        print(text)
    return 0


def cmd_dataset_describe(args: argparse.Namespace) -> int:
    from dataset_builder.describe import describe, format_describe

    d = describe(Path(args.dir), verify=args.verify)
    print(json.dumps(d, indent=2, default=str) if args.json else format_describe(d))
    return 0


def _forward(group: str, name: str, argv: list[str]) -> int:
    ref = _FORWARDED[group].get(name)
    if ref is None:
        _err(f"unknown {group} target {name!r}; choose from {', '.join(sorted(_FORWARDED[group]))}")
        return 2
    mod, _, fn = ref.partition(":")
    try:
        target = getattr(importlib.import_module(mod), fn)
    except (ImportError, AttributeError) as exc:
        _err(f"{group} {name} is not available in this installation: {exc}")
        return 2
    return int(target(argv) or 0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="axedge", description="Edge data collector and AI-ready dataset builder for manufacturing.")
    p.add_argument("--version", action="version", version=f"axedge {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="run the agent on a config file")
    r.add_argument("config")
    r.add_argument("--duration-secs", type=float, default=None, help="stop after N seconds (default: until SIGTERM/Ctrl-C)")
    r.add_argument("--no-status", action="store_true", help="no live status line on a terminal")
    r.set_defaults(func=cmd_run)

    v = sub.add_parser("validate", help="validate a config file (and optionally probe every device)")
    v.add_argument("config")
    v.add_argument("--probe", action="store_true", help="connect to every device and read once")
    v.set_defaults(func=cmd_validate)

    c = sub.add_parser("config", help="configuration helpers")
    csub = c.add_subparsers(dest="config_command", metavar="SUBCOMMAND", required=True)
    cs = csub.add_parser("schema", help="print the JSON Schema of the config file (for editors)")
    cs.add_argument("--out")
    cs.set_defaults(func=cmd_config_schema)
    cr = csub.add_parser("reference", help="print the Markdown config reference (docs/config-reference.md)")
    cr.add_argument("--out")
    cr.set_defaults(func=cmd_config_reference)

    d = sub.add_parser("dataset", help="dataset tools")
    dsub = d.add_subparsers(dest="dataset_command", metavar="SUBCOMMAND", required=True)
    dd = dsub.add_parser("describe", help="files, rows, signals, time range and gaps of a dataset")
    dd.add_argument("dir")
    dd.add_argument("--json", action="store_true")
    dd.add_argument("--verify", action="store_true", help="also verify file checksums")
    dd.set_defaults(func=cmd_dataset_describe)
    for name, help_ in (("build", "build a curated (AI-ready) dataset from a raw dataset"),
                        ("import-csv", "import CSV logs into the raw format with a mapping file"),
                        ("report", "write a self-contained HTML report of a dataset"),
                        ("export", "export a dataset under a sharing policy (drop, pseudonymise, quantise ...)")):
        fw = dsub.add_parser(name, help=help_, add_help=False)
        fw.add_argument("rest", nargs=argparse.REMAINDER)
        fw.set_defaults(func=lambda a, _n=name: _call("dataset_builder.cli:main", [_n, *a.rest]))

    for group, help_ in (("sim", "run a simulated device"), ("discover", "browse a server and write a config section")):
        g = sub.add_parser(group, help=help_, add_help=False)
        g.add_argument("target", nargs="?", help=", ".join(sorted(_FORWARDED[group])))
        g.add_argument("rest", nargs=argparse.REMAINDER)
        g.set_defaults(func=lambda a, _g=group: _forward(_g, a.target, a.rest) if a.target else (print(
            f"usage: axedge {_g} {{{','.join(sorted(_FORWARDED[_g]))}}} ..."), 2)[1])

    dm = sub.add_parser("demo", help="run the simulated plant and build a dataset (what `make demo` runs)", add_help=False)
    dm.add_argument("rest", nargs=argparse.REMAINDER)
    dm.set_defaults(func=lambda a: _call("edge_agent.demo.run:main", a.rest))

    dr = sub.add_parser("doctor", help="check every device, broker, certificate and directory of a config", add_help=False)
    dr.add_argument("rest", nargs=argparse.REMAINDER)
    dr.set_defaults(func=lambda a: _call("edge_agent.doctor:main", a.rest))

    m = sub.add_parser("model", help="train, score and evaluate anomaly models", add_help=False)
    m.add_argument("rest", nargs=argparse.REMAINDER)
    m.set_defaults(func=lambda a: _call("models.cli:main", a.rest))
    return p


def _call(ref: str, argv: list[str]) -> int:
    mod, _, fn = ref.partition(":")
    return int(getattr(importlib.import_module(mod), fn)(argv) or 0)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("run", "demo"):  # processes that run the agent: before pyarrow loads
        from edge_agent.runtime.memory import tune_process

        tune_process()
    # forwarded commands parse their own options (argparse REMAINDER cannot start with an option)
    direct = {"demo": "edge_agent.demo.run:main", "model": "models.cli:main", "doctor": "edge_agent.doctor:main"}
    if argv and argv[0] in direct and not (len(argv) == 1 and argv[0] != "demo"):
        return _guarded(lambda: _call(direct[argv[0]], argv[1:]))
    if len(argv) >= 2 and argv[0] == "dataset" and argv[1] in ("build", "import-csv", "report", "export"):
        return _guarded(lambda: _call("dataset_builder.cli:main", argv[1:]))
    if len(argv) >= 2 and argv[0] in _FORWARDED and not argv[1].startswith("-"):
        return _guarded(lambda: _forward(argv[0], argv[1], argv[2:]))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return _guarded(lambda: args.func(args))


def _guarded(fn) -> int:
    from edge_agent.errors import AxedgeError, ConfigError

    try:
        return int(fn() or 0)
    except ConfigError as exc:
        _err("invalid configuration:")
        for line in exc.problems or [str(exc)]:
            print(f"  {line}", file=sys.stderr)
        return 2
    except AxedgeError as exc:
        _err(str(exc))
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
