"""Topic templates: ``plant/{line}/{asset}/{signal}`` -> the filter ``plant/+/+/+`` and a matcher
that pulls the variables out of a concrete topic.

A ``{name}`` level matches one topic level (``+``); a trailing ``#`` matches the rest (exposed as
the variable ``_rest``). Plain filters with ``+``/``#`` are templates without names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_VAR = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")
_BAD_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")


@dataclass(frozen=True, slots=True)
class TopicTemplate:
    template: str
    filter: str
    levels: tuple[str | None, ...]  # literal level, or None for a wildcard / variable level
    names: tuple[str | None, ...]  # variable name per level (None for literals and anonymous '+')
    multi: bool  # ends with '#'

    @classmethod
    def parse(cls, template: str) -> TopicTemplate:
        if not template:
            raise ValueError("topic must not be empty")
        parts = template.split("/")
        levels: list[str | None] = []
        names: list[str | None] = []
        out: list[str] = []
        multi = False
        seen: set[str] = set()
        for i, p in enumerate(parts):
            m = _VAR.match(p)
            if p == "#":
                if i != len(parts) - 1:
                    raise ValueError(f"topic {template!r}: '#' must be the last level")
                multi = True
                out.append("#")
                break
            if m:
                name = m.group(1)
                if name in seen:
                    raise ValueError(f"topic {template!r}: variable {{{name}}} used twice")
                seen.add(name)
                levels.append(None)
                names.append(name)
                out.append("+")
            elif p == "+":
                levels.append(None)
                names.append(None)
                out.append("+")
            elif "{" in p or "}" in p or "+" in p or "#" in p:
                raise ValueError(f"topic {template!r}: level {p!r} must be a literal, '+', '#' or a whole {{variable}}")
            else:
                levels.append(p)
                names.append(None)
                out.append(p)
        return cls(template, "/".join(out), tuple(levels), tuple(names), multi)

    @property
    def variables(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if n)

    def match(self, topic: str) -> dict[str, str] | None:
        """The variables of ``topic`` if it matches, else None."""
        parts = topic.split("/")
        n = len(self.levels)
        if len(parts) < n or (not self.multi and len(parts) != n):
            return None
        out: dict[str, str] = {}
        for lit, name, part in zip(self.levels, self.names, parts, strict=False):
            if lit is not None:
                if part != lit:
                    return None
            elif name is not None:
                out[name] = part
        if self.multi:
            out["_rest"] = "/".join(parts[n:])
        return out


def render(template: str, variables: dict[str, str]) -> str:
    """Fill ``{name}`` placeholders; unknown names raise KeyError (caught by the caller)."""
    return template.format_map(variables)


def clean_level(text: str) -> str:
    """A topic level or metric name made safe as an asset level / signal name."""
    s = _BAD_NAME.sub("_", text.strip()).strip("_")
    return s[:128] or "_"


def clean_metric_name(name: str) -> str:
    """Sparkplug metric names use '/' as a folder separator: ``Inputs/Temp 1`` -> ``Inputs.Temp_1``."""
    return clean_level(name.replace("/", "."))
