"""YAML files whose every key remembers its line, so errors name file:line:key.

One mechanism for the config file, the policy file and the x5u map: ``load(path)``
returns a ``Section`` (a mapping) whose typed getters raise ``ConfigError`` with the
file, the line and the dotted key when a value is missing or of the wrong type.

    root = load("config/sipguard.yaml")
    mode = root.choice("mode", ("proxy", "redirect"), default="proxy")
    x5u = root.section("shaken").section("x5u")
    timeout = x5u.number("timeout", default=2.0, minimum=0.01)

Every file is hostile until read: ``load`` refuses a file over ``MAX_FILE_BYTES``, text
that is not UTF-8, nesting deeper than ``MAX_DEPTH``, anchors/aliases (``&a``/``*a``)
that would stand for more than ``MAX_ALIAS_NODES`` nodes (a few hundred bytes of
"billion laughs" expand to billions) or that contain themselves, and any value PyYAML
cannot build (``2026-13-45``, a 5,000-digit integer). Each refusal is a ``ConfigError``
naming the line; nothing else escapes ``load`` or ``parse``, so a caller that keeps the
running file on ConfigError keeps it on every bad file. Numbers must be finite and
within bounds (``NUMBER_LIMIT`` when the key gives none).
"""

from __future__ import annotations

import builtins
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import yaml

from sipguard.errors import ConfigError

_MISSING: Any = object()

MAX_FILE_BYTES = 4 * 1024 * 1024     # config, policy, x5u map: real ones are a few KB
MAX_DEPTH = 64                       # mappings/lists inside each other (a policy needs ~10)
MAX_ALIAS_NODES = 100_000            # nodes that aliases may stand for, in all
NUMBER_LIMIT = 1e9                   # |value| of a number key that sets no bound of its own


class _LineLoader(yaml.SafeLoader):
    """SafeLoader that records the line of each mapping key and sequence item, refuses
    nesting deeper than MAX_DEPTH before recursing into it, and turns a value PyYAML
    cannot build into a ConfigError on its line."""

    _depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # PyYAML composes recursively: 50,000 `[` would end in RecursionError, so the
        # depth is counted on the way down and refused before Python's stack runs out
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"nested more than {MAX_DEPTH} levels deep; flatten the file",
                                  line=mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ConfigError, yaml.YAMLError):
            raise
        except Exception as exc:   # noqa: BLE001 - PyYAML's constructors raise whatever int()/date() raise
            tag = node.tag.rsplit(":", 1)[-1]
            raise ConfigError(f"cannot read this value as {tag}: {exc}", line=node.start_mark.line + 1) from None


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
    """Parse YAML text; every problem (syntax, depth, aliases, values) is a ConfigError naming the line."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB; this is not a config "
                          "file sipguard should read", path)
    loader = None
    try:
        loader = _LineLoader(text)          # reads the whole text: refuses control characters here
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node)
        return loader.construct_document(node)
    except ConfigError as exc:
        raise ConfigError(exc.message, path, exc.line, exc.key) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(f"invalid YAML: {exc.problem or exc}", path, line) from None
    except yaml.reader.ReaderError as exc:
        line = text.count("\n", 0, exc.position) + 1
        raise ConfigError(f"invalid YAML: character {exc.character:#x} is not allowed in YAML", path, line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", path) from None
    except (RecursionError, MemoryError, UnicodeError) as exc:
        # the bounds above should make these unreachable; a file must never get past as one
        raise input_failure(exc, path, loader.line + 1 if loader is not None else None) from None
    finally:
        if loader is not None:
            loader.dispose()


def input_failure(exc: BaseException, path: str, line: int | None = None) -> ConfigError:
    """A RecursionError/MemoryError/UnicodeError met while reading a file, as a refusal of it."""
    if isinstance(exc, RecursionError):
        return ConfigError("nested too deeply to read; flatten the file", path, line)
    if isinstance(exc, MemoryError):
        return ConfigError("too large to read (out of memory); make the file smaller", path, line)
    return ConfigError(f"not valid text: {exc}", path, line)


def read_bounded(path: str, limit: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of ``path``, refusing a file larger than ``limit`` without reading all of it."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", path) from None
    if len(data) > limit:
        raise ConfigError(f"file is larger than {_size(limit)}; refusing to read it", path)
    return data


def load(path: str) -> Section:
    """Read a YAML file whose top level is a mapping."""
    data = read_bounded(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"file is not UTF-8 text (byte {data[exc.start]:#04x})", path, line) from None
    return section_of(parse(text, path), path)


def _size(limit: int) -> str:
    return f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit} bytes"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse aliases that make the document much bigger or deeper than its text, or loop.

    The composer returns the anchored node itself for each ``*alias``, so the document is a
    graph; everything that walks the loaded data (the policy compiler, check_keys ...) walks
    it as a tree. One pass, without recursion, sizes every node as a tree (memoised, so
    the pass itself stays linear in the text) and adds up what the aliases stand for.
    """
    done: dict[int, tuple[int, int]] = {}          # id(node) -> (nodes as a tree, depth)
    active: set[int] = {id(root)}
    stack: list[tuple[yaml.Node, Iterator[yaml.Node], list[int]]] = [(root, iter(_children(root)), [1, 0])]
    expanded = 0
    while stack:
        node, children, acc = stack[-1]
        child = next(children, None)
        if child is None:
            stack.pop()
            active.discard(id(node))
            done[id(node)] = (acc[0], acc[1] + 1)
            if stack:
                parent = stack[-1][2]
                parent[0] += acc[0]
                parent[1] = max(parent[1], acc[1] + 1)
            continue
        key = id(child)
        line = node.start_mark.line + 1
        if key in active:
            raise ConfigError("an alias refers to a mapping or list that contains it; write the value out",
                              line=line)
        if key in done:                            # a second visit: an alias
            size, depth = done[key]
            expanded += size
            if expanded > MAX_ALIAS_NODES:
                raise ConfigError(f"aliases (*name) stand for more than {MAX_ALIAS_NODES} values in all; "
                                  "write the values out instead of repeating anchors", line=line)
            if len(stack) + depth > MAX_DEPTH:
                raise ConfigError(f"aliases nest the document more than {MAX_DEPTH} levels deep", line=line)
            acc[0] += size
            acc[1] = max(acc[1], depth)
            continue
        active.add(key)
        stack.append((child, iter(_children(child)), [1, 0]))


def section_of(data: Any, path: str, key: str = "") -> Section:
    if data is None:
        data = _Lines()
    if not isinstance(data, dict):
        line = getattr(data, "line", None)
        raise ConfigError("expected a mapping (key: value lines)", path, line or 1, key or None)
    return Section(data, path, key)


class Section:
    """A YAML mapping with typed, line-aware getters. ``prefix`` is its dotted key.

    A getter raises ``ConfigError`` at a wrong value. With a ``sink`` (``check-config``, which
    wants every problem of a file at once), a wrong value that has a default is appended to the
    sink instead and the default is returned, so the reader goes on to the section's next key;
    a required key still raises (there is no value to go on with). Sections read from this one
    share its sink."""

    __slots__ = ("data", "path", "prefix", "sink")

    def __init__(self, data: dict[Any, Any], path: builtins.str, prefix: builtins.str = "",
                 sink: builtins.list[ConfigError] | None = None) -> None:
        self.data = data
        self.path = path
        self.prefix = prefix
        self.sink = sink

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

    def _refuse(self, error: ConfigError, default: Any) -> Any:
        """Raise ``error``; or, collecting (``sink``) and with a default to go on with, keep it."""
        if self.sink is None or default is _MISSING:
            raise error
        self.sink.append(error)
        return default

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
                self._refuse(self.error(str(key), f"unknown key; expected one of: {', '.join(allowed)}"), None)

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
            return self._refuse(self.error(key, f"expected a string, got {_kind(value)}"), default)
        return str(value)

    def file(self, key: builtins.str, base_dir: builtins.str) -> builtins.str | None:
        """An optional path to an existing file, relative to ``base_dir`` (the config's folder)."""
        value = self.str(key, default=None)
        if value is None:
            return None
        full = value if os.path.isabs(value) else os.path.join(base_dir, value)
        if not os.path.exists(full):
            return self._refuse(self.error(key, f"file not found: {full}"), None)
        return builtins.str(full)

    def bool(self, key: builtins.str, default: Any = _MISSING) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if not isinstance(value, bool):
            return self._refuse(self.error(key, f"expected true or false, got {value!r}"), default)
        return value

    def number(self, key: builtins.str, default: Any = _MISSING, minimum: float | None = None,
               maximum: float | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            return self._refuse(self.error(key, f"expected a number, got {value!r}"), default)
        if isinstance(value, float) and not math.isfinite(value):
            # .nan passes every < and > test, .inf every minimum: both would reach the code
            return self._refuse(self.error(key, f"expected a finite number, got {value}"), default)
        low = minimum if minimum is not None else -NUMBER_LIMIT
        high = maximum if maximum is not None else NUMBER_LIMIT
        if value < low:
            return self._refuse(self.error(key, f"must be >= {_plain(low)}, got {_plain(value)}"), default)
        if value > high:
            return self._refuse(self.error(key, f"must be <= {_plain(high)}, got {_plain(value)}"), default)
        return value

    def int(self, key: builtins.str, default: Any = _MISSING, minimum: int | None = None,
            maximum: int | None = None) -> Any:
        value = self.number(key, default, minimum, maximum)
        if value is default:
            return value
        if not isinstance(value, int):
            return self._refuse(self.error(key, f"expected a whole number, got {value!r}"), default)
        return value

    def choice(self, key: builtins.str, options: Sequence[builtins.str], default: Any = _MISSING) -> Any:
        value = self.str(key, default)
        if value is default:
            return value
        if value not in options:
            return self._refuse(self.error(key, f"{value!r} is not one of: {', '.join(options)}"), default)
        return value

    def list(self, key: builtins.str, default: Any = _MISSING, item: type | tuple[type, ...] | None = None) -> Any:
        value = self._get(key, default)
        if value is default:
            return value
        if isinstance(value, builtins.str | int | float) and not isinstance(value, bool) and item is not None:
            value = [value]  # a lone scalar where a list is expected: accept it as a list of one
        if not isinstance(value, list):
            return self._refuse(self.error(key, f"expected a list, got {_kind(value)}"), default)
        if item is not None:
            for index, element in enumerate(value):
                if not isinstance(element, item) or isinstance(element, bool) and item is not bool:
                    return self._refuse(ConfigError(f"item {index + 1} should be {_kind_name(item)}, got {element!r}",
                                                    self.path, self.item_line(key, index), self.dotted(key)), default)
        return value

    def section(self, key: builtins.str, required: builtins.bool = False) -> Section:
        value = self.data.get(key)
        if value is None:
            if required:
                raise ConfigError("required section is missing", self.path, self.line, self.dotted(key))
            return Section(_Lines(), self.path, self.dotted(key), self.sink)
        if not isinstance(value, dict):
            self._refuse(self.error(key, f"expected a mapping, got {_kind(value)}"), None)
            return Section(_Lines(), self.path, self.dotted(key), self.sink)
        return Section(value, self.path, self.dotted(key), self.sink)

    def sections(self, key: builtins.str) -> builtins.list[Section]:
        """A list of mappings (e.g. trunks), each a Section keyed ``key[i]``."""
        items = self.list(key, default=[])
        out = []
        for index, element in enumerate(items):
            if not isinstance(element, dict):
                self._refuse(ConfigError(f"item {index + 1} should be a mapping, got {_kind(element)}",
                                         self.path, self.item_line(key, index), self.dotted(key)), None)
                continue
            out.append(Section(element, self.path, f"{self.dotted(key)}[{index}]", self.sink))
        return out


def _plain(value: float) -> str:
    """1e9 as 1000000000, 0.05 as 0.05, a 40-digit int as 1e+40 (the message stays short)."""
    if isinstance(value, int) and abs(value) > 10 ** 15:
        digits = len(str(abs(value)))
        return f"{value:.3g}" if digits < 300 else f"a {digits}-digit number"   # float() overflows past 1e308
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


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
