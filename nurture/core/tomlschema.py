"""TOML files checked against frozen dataclasses, with errors that point at ``file:line``.

``tomllib`` gives values but no positions, so :class:`TomlFile` keeps a map from key path to line number,
built by a light scan of the text (table headers, arrays of tables, ``key =`` lines, dotted keys). That is
enough to say ``campaigns/mfg.toml:12: unknown key "temprature" (did you mean "temperature"?)``.

:func:`build` turns a table into a dataclass instance: it rejects unknown keys (with a suggestion), checks
each value against the field's annotation (``str``, ``int``, ``float``, ``bool``, ``date``, ``list[X]``,
``dict[str, X]``, ``X | None``, ``Literal[...]``, nested dataclasses, ``tuple[Dataclass, ...]`` for arrays of
tables) and collects every problem before raising one :class:`~nurture.core.errors.ConfigError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from nurture.core.errors import ConfigError

KeyPath = tuple[str | int, ...]

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"""^\s*((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=""")


def _split_key(text: str) -> list[str]:
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"]*"|'[^']*'""", text)
    return [p[1:-1] if p[:1] in "\"'" else p for p in parts]


class TomlFile:
    """A parsed TOML file plus the line of each key. ``display`` is the name used in messages."""

    def __init__(self, path: Path, display: str | None = None, text: str | None = None) -> None:
        self.path = Path(path)
        self.display = display or str(path)
        if text is None:
            try:
                raw = self.path.read_bytes()
            except FileNotFoundError:
                raise ConfigError(f"{self.display}: file not found") from None
            except OSError as exc:
                raise ConfigError(f"{self.display}: cannot read: {exc.strerror}") from None
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                raise ConfigError(
                    f"{self.display}: not UTF-8", hint="save the file as UTF-8 (TOML files must be UTF-8)"
                ) from None
        try:
            self.data: dict[str, Any] = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            # tomllib says "... (at line 3, column 7)": move the position to the front, as compilers do.
            msg = str(exc)
            m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
            where = f"{self.display}:{m.group(1)}" if m else self.display
            msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", msg)
            raise ConfigError(f"{where}: invalid TOML: {msg}") from None
        self.lines: dict[KeyPath, int] = {}
        self._scan(text)

    def _scan(self, text: str) -> None:
        table: KeyPath = ()
        counts: dict[KeyPath, int] = {}
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_multiline:
                if in_multiline in line:
                    in_multiline = None
                continue
            header = _HEADER.match(line)
            if header and not _KEY.match(line):
                path = tuple(_split_key(header.group(2)))
                if header.group(1) == "[[":
                    index = counts.get(path, 0)
                    counts[path] = index + 1
                    table = path + (index,)
                else:
                    table = path
                self.lines.setdefault(table, number)
                continue
            key = _KEY.match(line)
            if key:
                full = table + tuple(_split_key(key.group(1)))
                self.lines.setdefault(full, number)
                rest = line[key.end() :]
                for quote in ('"""', "'''"):
                    if rest.count(quote) == 1:
                        in_multiline = quote

    def line_of(self, path: KeyPath) -> int | None:
        """The line where ``path`` (or its nearest ancestor) is written."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return None

    def where(self, path: KeyPath) -> str:
        line = self.line_of(path)
        return f"{self.display}:{line}" if line else self.display


class Problems:
    """Collects ``file:line: message`` strings; :meth:`raise_if_any` raises them as one ConfigError."""

    def __init__(self, source: TomlFile | None) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, path: KeyPath, message: str) -> None:
        where = self.source.where(path) if self.source else "<config>"
        self.items.append(f"{where}: {message}")

    def raise_if_any(self) -> None:
        if self.items:
            if len(self.items) == 1:
                raise ConfigError(self.items[0])
            raise ConfigError(f"{len(self.items)} problems:\n  " + "\n  ".join(self.items))


def dotted(path: KeyPath) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    dt.date: "a date (2026-12-29)",
    dt.time: "a time (09:30)",
}


def _describe(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "an array",
        dict: "a table",
        dt.date: "a date",
        dt.datetime: "a date-time",
        dt.time: "a time",
    }.get(type(value), type(value).__name__)


def _convert(value: Any, tp: Any, path: KeyPath, problems: Problems) -> Any:
    """Check ``value`` against annotation ``tp``; return the converted value or None after recording a problem."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        if len(members) == 1:
            return _convert(value, members[0], path, problems)
        for arg in members:
            probe = Problems(None)
            result = _convert(value, arg, path, probe)
            if not probe.items:
                return result
        problems.add(path, f"{dotted(path)} has the wrong type: got {_describe(value)}")
        return None
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
            tip = f' (did you mean "{close[0]}"?)' if close else ""
            problems.add(
                path,
                f"{dotted(path)} = {value!r} is not allowed{tip}; choose one of: " + ", ".join(str(c) for c in choices),
            )
            return None
        return value
    if origin in (list, tuple):
        args = typing.get_args(tp)
        inner = args[0] if args else Any
        if not isinstance(value, list):
            if dataclasses.is_dataclass(inner) and isinstance(value, dict):
                problems.add(path, f"{dotted(path)} must be an array of tables ([[{dotted(path)}]])")
            else:
                problems.add(path, f"{dotted(path)} must be an array, got {_describe(value)}")
            return None
        items = [_convert(v, inner, path + (i,), problems) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        _, inner = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.add(path, f"{dotted(path)} must be a table, got {_describe(value)}")
            return None
        return {k: _convert(v, inner, path + (k,), problems) for k, v in value.items()}
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.add(path, f"{dotted(path)} must be a table, got {_describe(value)}")
            return None
        return build(tp, value, path, problems)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.add(path, f"{dotted(path)} must be a number, got {_describe(value)} {value!r}")
            return None
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.add(path, f"{dotted(path)} must be an integer, got {_describe(value)} {value!r}")
            return None
        return value
    if tp is dt.date:
        if isinstance(value, dt.datetime) or not isinstance(value, dt.date):
            if isinstance(value, str):
                try:
                    return dt.date.fromisoformat(value)
                except ValueError:
                    pass
            problems.add(path, f"{dotted(path)} must be a date like 2026-12-29, got {value!r}")
            return None
        return value
    if tp in (str, bool, dt.time):
        if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
            problems.add(path, f"{dotted(path)} must be {_TYPE_NAMES[tp]}, got {_describe(value)} {value!r}")
            return None
        return value
    raise TypeError(f"tomlschema cannot check annotation {tp!r}")  # a programming error, not a user one


def bounded(default: float, low: float, high: float, unit: str = "", *, above: bool = False) -> Any:
    """A dataclass field with a valid range, checked by :func:`build`: ``low <= value <= high``
    (``low < value`` when ``above``). ``unit`` is said in the error ("seconds")."""
    return dataclasses.field(default=default, metadata={"range": (low, high, above), "unit": unit})


def _number(x: float) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def _in_range(value: Any, written: Any, field: dataclasses.Field, path: KeyPath, problems: Problems) -> bool:
    bounds = field.metadata.get("range")
    if bounds is None or not isinstance(value, int | float):
        return True
    low, high, above = bounds
    if (low < value if above else low <= value) and value <= high:
        return True
    unit = field.metadata.get("unit", "")
    valid = f"more than {_number(low)} and at most {_number(high)}" if above else f"{_number(low)} to {_number(high)}"
    section = f"[{dotted(path[:-1])}] " if len(path) > 1 else ""
    problems.add(path, f"{section}{path[-1]} = {written!r} is out of range: use {valid}{' ' + unit if unit else ''}")
    return False


def build(cls: type, table: dict[str, Any], path: KeyPath, problems: Problems) -> Any:
    """Make ``cls`` from ``table``; unknown keys, wrong types and missing required keys become problems.

    A field may carry ``metadata={"toml": "other-name"}`` when its TOML key differs from the attribute, and
    ``metadata={"range": (low, high, above)}`` (see :func:`bounded`) to refuse numbers outside ``low..high``
    (``above``: strictly greater than ``low``), each reported at its own key and line.
    ``__post_init__`` may raise ``ValueError`` for cross-field rules; its message is recorded at ``path``.
    """
    hints = typing.get_type_hints(cls)
    fields = {
        f.metadata.get("toml", f.name): f
        for f in dataclasses.fields(cls)
        if f.init and not f.metadata.get("toml", "").startswith("__")
    }
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        field = fields.get(key)
        if field is None:
            close = difflib.get_close_matches(key, list(fields), n=1, cutoff=0.6)
            tip = f' (did you mean "{close[0]}"?)' if close else f"; known keys: {', '.join(sorted(fields))}"
            problems.add(path + (key,), f'unknown key "{key}"' + (f" in [{dotted(path)}]" if path else "") + tip)
            continue
        before = len(problems.items)
        converted = _convert(value, hints[field.name], path + (key,), problems)
        if len(problems.items) == before and _in_range(converted, value, field, path + (key,), problems):
            kwargs[field.name] = converted
    failed = False
    for key, field in fields.items():
        if (
            field.name not in kwargs
            and field.default is dataclasses.MISSING
            and field.default_factory is dataclasses.MISSING
        ):
            if key in table:
                failed = True  # already reported as a wrong value
            else:
                problems.add(path, f'missing key "{key}"' + (f" in [{dotted(path)}]" if path else ""))
                failed = True
    if failed:
        return None
    try:
        return cls(**kwargs)
    except ValueError as exc:
        problems.add(path, str(exc))
        return None
