"""YAML files whose every key remembers its line, so errors name file:line:key.

One mechanism for the config file, the policy file and the x5u map: ``load(path)``
returns a ``Section`` (a mapping) whose typed getters raise ``ConfigError`` with the
file, the line and the dotted key when a value is missing or of the wrong type.

    root = load("config/sipguard.yaml")
    mode = root.choice("mode", ("proxy", "redirect"), default="proxy")
    x5u = root.section("shaken").section("x5u")
    timeout = x5u.number("timeout", default=2.0, minimum=0.01)
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from sipguard.errors import ConfigError

_MISSING: Any = object()


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of each mapping key and sequence item."""


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    data: dict[Any, Any] = _Lines()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise ConfigError("mapping keys must be plain scalars", line=key_node.start_mark.line + 1)
        if key in data:
            raise ConfigError(f"duplicate key {key!r}", line=key_node.start_mark.line + 1, key=str(key))
        data[key] = loader.construct_object(value_node, deep=True)
        data.lines[key] = key_node.start_mark.line + 1  # type: ignore[attr-defined]
    data.line = node.start_mark.line + 1  # type: ignore[attr-defined]
    return data


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> list[Any]:
    items = _LineList(loader.construct_object(child, deep=True) for child in node.value)
    items.lines = [child.start_mark.line + 1 for child in node.value]
    items.line = node.start_mark.line + 1
    return items


class _Lines(dict[Any, Any]):
    """A dict that also knows where it and each of its keys stood in the file."""

    __slots__ = ("lines", "line")

    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}
        self.line = 0


class _LineList(list[Any]):
    __slots__ = ("lines", "line")

    def __init__(self, items: Any = ()) -> None:
        super().__init__(items)
        self.lines: list[int] = []
        self.line = 0


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def parse(text: str, path: str = "<string>") -> Any:
    """Parse YAML text; syntax errors become ConfigError naming the line."""
    try:
        return yaml.load(text, Loader=_LineLoader)  # noqa: S506 - SafeLoader subclass
    except ConfigError as exc:
        exc.path = path
        raise ConfigError(exc.message, path, exc.line, exc.key) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", path, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path) from None


def load(path: str) -> Section:
    """Read a YAML file whose top level is a mapping."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", path) from None
    except UnicodeDecodeError:
        raise ConfigError("file is not UTF-8 text", path) from None
    return section_of(parse(text, path), path)


def section_of(data: Any, path: str, key: str = "") -> Section:
    if data is None:
        data = _Lines()
    if not isinstance(data, dict):
        line = getattr(data, "line", None)
        raise ConfigError("expected a mapping (key: value lines)", path, line or 1, key or None)
    return Section(data, path, key)


class Section:
    """A YAML mapping with typed, line-aware getters. ``prefix`` is its dotted key."""

    __slots__ = ("data", "path", "prefix")

    def __init__(self, data: dict[Any, Any], path: builtins.str, prefix: builtins.str = "") -> None:
        self.data = data
        self.path = path
        self.prefix = prefix

    # -- where things are -------------------------------------------------------------
    @property
    def line(self) -> int | None:
        return getattr(self.data, "line", None) or None

    def line_of(self, key: builtins.str) -> int | None:
        lines = getattr(self.data, "lines", None)
        if lines and key in lines:
            return int(lines[key])
        return self.line

    def dotted(self, key: builtins.str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: builtins.str, message: builtins.str) -> ConfigError:
        return ConfigError(message, self.path, self.line_of(key), self.dotted(key))

    def item_line(self, key: builtins.str, index: int) -> int | None:
        value = self.data.get(key)
        lines = getattr(value, "lines", None)
        if lines and index < len(lines):
            return int(lines[index])
        return self.line_of(key)

    # -- mapping protocol ---------------------------------------------------------------
    def __contains__(self, key: object) -> builtins.bool:
        return key in self.data

    def __iter__(self) -> Iterator[builtins.str]:
        return iter(self.data)

    def keys(self) -> builtins.list[builtins.str]:
        return [str(k) for k in self.data]

    def raw(self, key: builtins.str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def check_keys(self, allowed: Sequence[builtins.str]) -> None:
        """Unknown keys are typos more often than not: name them and what is allowed."""
        for key in self.data:
            if key not in allowed:
                raise self.error(str(key), f"unknown key; expected one of: {', '.join(allowed)}")

    # -- typed getters --------------------------------------------------------------------
    def _get(self, key: builtins.str, default: Any) -> Any:
        if key in self.data and self.data[key] is not None:
            return self.data[key]
        if default is _MISSING:
            raise ConfigError("required key is missing", self.path, self.line, self.dotted(key))
        return default

    def str(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, builtins.str | int | float):
            raise self.error(key, f"expected a string, got {_kind(value)}")
        return str(value)

    def file(self, key: builtins.str, base_dir: builtins.str) -> builtins.str | None:
        """An optional path to an existing file, relative to ``base_dir`` (the config's folder)."""
        value = self.str(key, default=None)
        if value is None:
            return None
        full = value if os.path.isabs(value) else os.path.join(base_dir, value)
        if not os.path.exists(full):
            raise self.error(key, f"file not found: {full}")
        return builtins.str(full)

    def bool(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {value!r}")
        return value

    def number(self, key: builtins.str, default: Any = _MISSING, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.error(key, f"expected a number, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be <= {maximum}, got {value}")
        return value

    def int(self, key: builtins.str, default: Any = _MISSING, minimum: int | None = None,
            maximum: int | None = None) -> Any:
        value = self.number(key, default, minimum, maximum)
        if value is default:
            return value
        if not isinstance(value, int):
            raise self.error(key, f"expected a whole number, got {value!r}")
        return value

    def choice(self, key: builtins.str, options: Sequence[builtins.str], default: Any = _MISSING) -> Any:
        value = self.str(key, default)
        if value is default:
            return value
        if value not in options:
            raise self.error(key, f"{value!r} is not one of: {', '.join(options)}")
        return value

    def list(self, key: builtins.str, default: Any = _MISSING, item: type | tuple[type, ...] | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, builtins.str | int | float) and not isinstance(value, bool) and item is not None:
            value = [value]  # a lone scalar where a list is expected: accept it as a list of one
        if not isinstance(value, list):
            raise self.error(key, f"expected a list, got {_kind(value)}")
        if item is not None:
            for index, element in enumerate(value):
                if not isinstance(element, item) or isinstance(element, bool) and item is not bool:
                    raise ConfigError(f"item {index + 1} should be {_kind_name(item)}, got {element!r}",
                                      self.path, self.item_line(key, index), self.dotted(key))
        return value

    def section(self, key: builtins.str, required: builtins.bool = False) -> Section:
        value = self.data.get(key)
        if value is None:
            if required:
                raise ConfigError("required section is missing", self.path, self.line, self.dotted(key))
            return Section(_Lines(), self.path, self.dotted(key))
        if not isinstance(value, dict):
            raise self.error(key, f"expected a mapping, got {_kind(value)}")
        return Section(value, self.path, self.dotted(key))

    def sections(self, key: builtins.str) -> builtins.list[Section]:
        """A list of mappings (e.g. trunks), each a Section keyed ``key[i]``."""
        items = self.list(key, default=[])
        out = []
        for index, element in enumerate(items):
            if not isinstance(element, dict):
                raise ConfigError(f"item {index + 1} should be a mapping, got {_kind(element)}",
                                  self.path, self.item_line(key, index), self.dotted(key))
            out.append(Section(element, self.path, f"{self.dotted(key)}[{index}]"))
        return out


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _kind_name(item: type | tuple[type, ...]) -> str:
    types = item if isinstance(item, tuple) else (item,)
    names = {str: "a string", int: "a whole number", float: "a number", dict: "a mapping", bool: "true/false"}
    return " or ".join(names.get(t, t.__name__) for t in types)
