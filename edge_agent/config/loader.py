"""YAML loading that keeps line marks, secret references, and readable validation errors.

Errors read ``plant.yaml:42 connectors[1].interval_secs: Input should be greater than 0``.
Input values are never echoed in messages (they may be secrets).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from edge_agent.errors import ConfigError

Path_ = tuple[str | int, ...]

_SECRET_REF = re.compile(r"\$\{(env|file):([^}]+)\}")


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent overwrite hides config mistakes)."""


def _walk(node: yaml.Node, path: Path_, lines: dict[Path_, int], problems: list[str], fname: str) -> None:
    lines[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for k, v in node.value:
            key = k.value if isinstance(k, yaml.ScalarNode) else str(k)
            if key in seen:
                problems.append(f"{fname}:{k.start_mark.line + 1} {fmt_path(path + (key,))}: duplicate key")
            seen.add(key)
            lines[path + (key,)] = k.start_mark.line + 1
            _walk(v, path + (key,), lines, problems, fname)
            lines[path + (key,)] = k.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, path + (i,), lines, problems, fname)


def fmt_path(path: Path_) -> str:
    out = ""
    for p in path:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out or "<root>"


def _resolve_secrets(obj: Any, path: Path_, lines: dict[Path_, int], fname: str, problems: list[str], base: Path) -> Any:
    """Replace ``${env:NAME}`` / ``${file:PATH}`` in strings. Values are never logged."""
    if isinstance(obj, dict):
        return {k: _resolve_secrets(v, path + (k,), lines, fname, problems, base) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_resolve_secrets(v, path + (i,), lines, fname, problems, base) for i, v in enumerate(obj)]
    if isinstance(obj, str) and "${" in obj:

        def sub(m: re.Match[str]) -> str:
            kind, ref = m.group(1), m.group(2).strip()
            if kind == "env":
                val = os.environ.get(ref)
                if val is None:
                    problems.append(f"{fname}:{lines.get(path, '?')} {fmt_path(path)}: environment variable {ref} is not set")
                    return ""
                return val
            p = Path(ref)
            if not p.is_absolute():
                p = base / p
            try:
                return p.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                problems.append(f"{fname}:{lines.get(path, '?')} {fmt_path(path)}: cannot read secret file {p}: {exc.strerror}")
                return ""

        return _SECRET_REF.sub(sub, obj)
    return obj


def _error_path(loc: tuple[Any, ...], data: Any) -> Path_:
    """Map a pydantic error location onto the data path, dropping discriminator tags
    (``connectors.1.synthetic.rate_hz`` -> ``connectors[1].rate_hz``)."""
    out: list[str | int] = []
    cur = data
    for part in loc:
        if isinstance(cur, dict):
            if part in cur:
                out.append(part)
                cur = cur[part]
            elif isinstance(part, str) and cur.get("type") == part:
                continue  # tagged-union tag
            else:
                out.append(part)
                cur = None
        elif isinstance(cur, list) and isinstance(part, int):
            out.append(part)
            cur = cur[part] if 0 <= part < len(cur) else None
        elif isinstance(part, str) and part.startswith(("function-", "tagged-union", "list[", "dict[")):
            continue
        else:
            out.append(part)
            cur = None
    return tuple(out)


def _nearest_line(path: Path_, lines: dict[Path_, int]) -> int | str:
    p = path
    while p:
        if p in lines:
            return lines[p]
        p = p[:-1]
    return lines.get((), 1)


def load_config_text(text: str, fname: str = "<config>", base_dir: Path | None = None):
    """Parse and validate config text. Raises :class:`ConfigError` with ``file:line key: msg``."""
    from edge_agent.config.models import AgentConfig  # registries import connector config models

    try:
        node = yaml.compose(text, Loader=_LineLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else "?"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("invalid YAML", [f"{fname}:{line} <yaml>: {problem}"]) from None
    if node is None:
        data: Any = {}
        lines: dict[Path_, int] = {(): 1}
        problems: list[str] = []
    else:
        lines = {}
        problems = []
        _walk(node, (), lines, problems, fname)
        data = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    if problems:
        raise ConfigError("invalid configuration", problems)
    if not isinstance(data, dict):
        raise ConfigError("invalid configuration", [f"{fname}:1 <root>: the file must be a mapping of sections"])
    data = _resolve_secrets(data, (), lines, fname, problems, base_dir or Path.cwd())
    if problems:
        raise ConfigError("invalid configuration", problems)
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            path = _error_path(tuple(err["loc"]), data)
            msg = err["msg"]
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check spelling; see docs/config-reference.md)"
            elif err["type"] == "union_tag_invalid":
                pass
            problems.append(f"{fname}:{_nearest_line(path, lines)} {fmt_path(path)}: {msg}")
        raise ConfigError("invalid configuration", problems) from None
    return cfg


def load_config(path: str | os.PathLike[str]):
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {p}", [f"{p}: file not found"]) from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}", [f"{p}: cannot read: {exc.strerror}"]) from None
    return load_config_text(text, fname=str(p), base_dir=p.parent)
