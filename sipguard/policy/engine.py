"""Evaluate a loaded policy, and hold the running one across hot reloads.

``Policy.evaluate(facts)`` is the hot path: pure, no I/O, no parsing. Rules are tried
in order and the first that matches decides; otherwise the default does. Two things the
engine enforces whatever the file says:

* emergency calls (``facts.emergency``: 911, urn:service:sos) are never rejected: a
  reject becomes a plain forward and the reject goes into ``Decision.would`` (R1.8);
* ``mode: shadow``: every call is forwarded untouched (no sign, tag or next-hop change),
  named after the rule that matched, with the real decision in ``Decision.would``.

``PolicyHolder`` is what the proxy keeps: ``holder.current`` is read once per call, and
``maybe_reload()`` swaps in a new ``Policy`` object in one assignment, so a call sees the
old policy or the new one, never a mix. The proxy splits that in two:
``prepare()`` reads and compiles the file without touching the running policy, so it runs
in a thread (a large or hostile file costs that thread time while the event loop goes on
answering calls), and ``install()`` swaps the result in on the loop.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

from sipguard.errors import ConfigError
from sipguard.policy.conditions import make_first_match
from sipguard.policy.decision import Decision
from sipguard.policy.facts import Facts
from sipguard.policy.model import CompiledRule, Decide, Redress

DEFAULT_RULE = "default"      # the hits() key of the default action; no rule may take this name
log = logging.getLogger("sipguard.policy")


class Policy:
    """A compiled policy file. Build it with ``loader.load_policy``."""

    __slots__ = ("path", "version", "shadow", "rules", "_first_match", "_decides", "_hits")

    def __init__(self, path: str, version: int, shadow: bool, rules: tuple[CompiledRule, ...],
                 default: Decide) -> None:
        self.path = path
        self.version = version
        self.shadow = shadow
        self.rules = rules
        # All rule conditions chained into one generated function returning the index of
        # the first match (-1: none), so a call costs one Python call plus the compares.
        self._first_match = make_first_match(r.condition for r in rules)
        self._decides = tuple(r.decide for r in rules) + (default,)   # [-1]: the default
        self._hits = [0] * (len(rules) + 1)                           # [-1]: the default

    def evaluate(self, facts: Facts) -> Decision:
        """Facts in, decision out: the first matching rule decides, else the default."""
        index = self._first_match(facts)
        self._hits[index] += 1
        return self._enforce(self._decides[index](facts), facts)

    def _enforce(self, decision: Decision, facts: Facts) -> Decision:
        """What the engine imposes on any rule: shadow mode and emergency calls."""
        if self.shadow or (facts.emergency and decision.action == "reject"):
            return Decision("forward", rule=decision.rule, rule_class=decision.rule_class,
                            notice=decision.notice, would=decision)
        return decision

    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)

    def hits(self) -> dict[str, int]:
        """Calls decided by each rule (and by ``default``) since this policy loaded."""
        counts = {r.name: self._hits[i] for i, r in enumerate(self.rules)}
        counts[DEFAULT_RULE] = self._hits[-1]
        return counts

    def inherit_hits(self, older: Policy) -> None:
        """Carry counts over from the policy this one replaces, rule by rule name, so the
        per-rule metrics stay monotonic across a reload of an unchanged rule."""
        old = older.hits()
        for i, rule in enumerate(self.rules):
            self._hits[i] += old.get(rule.name, 0)
        self._hits[-1] += old[DEFAULT_RULE]


@dataclass(frozen=True, slots=True)
class _FileStamp:
    """What stat() says about the file; any change means "read it again"."""

    mtime_ns: int
    size: int
    inode: int


def _stamp(path: str) -> _FileStamp | OSError:
    try:
        st = os.stat(path)
    except OSError as exc:
        return exc
    return _FileStamp(st.st_mtime_ns, st.st_size, st.st_ino)


class PolicyHolder:
    """The running policy, swapped whole when the file changes and the new one is valid."""

    __slots__ = ("path", "redress", "current", "_seen")

    def __init__(self, path: str, redress: Redress) -> None:
        from sipguard.policy.loader import load_policy  # loader imports engine

        self.path = path
        self.redress = redress
        stamp = _stamp(path)
        self.current: Policy = load_policy(path, redress)
        self._seen: _FileStamp | OSError | None = stamp

    def maybe_reload(self, force: bool = False) -> bool | ConfigError:
        """Reload when the file changed (or ``force``, for SIGHUP), in this thread.

        True: a new policy is running. False: nothing changed. A ConfigError: the new
        file was refused (the message names file:line) and the old policy keeps running;
        the same broken file is not retried until it changes again, so the caller logs
        each problem once.
        """
        return self.install(self.prepare(force))

    def prepare(self, force: bool = False) -> Policy | bool | ConfigError:
        """What ``maybe_reload`` would do, short of the swap: a new Policy to ``install``,
        or False / a ConfigError as maybe_reload answers. Never touches the running policy,
        so it may run in another thread (one prepare at a time)."""
        due = self._due(force)
        if due is not True:
            return due
        return self._load()

    def install(self, prepared: Policy | bool | ConfigError) -> bool | ConfigError:
        """Put a prepared policy in force (in the thread that runs calls); pass the rest on."""
        if not isinstance(prepared, Policy):
            return prepared
        prepared.inherit_hits(self.current)
        self.current = prepared
        return True

    def _due(self, force: bool) -> bool | ConfigError:
        """True when the file must be read again; else what maybe_reload answers."""
        stamp = _stamp(self.path)
        if not force and stamp == self._seen:
            return False
        if isinstance(stamp, OSError):
            if isinstance(self._seen, OSError) and not force:
                return False
            self._seen = stamp
            return ConfigError(f"cannot read policy file: {stamp.strerror}; keeping the running policy",
                               self.path)
        self._seen = stamp
        return True

    def _load(self) -> Policy | ConfigError:
        from sipguard.policy.loader import load_policy

        try:
            return load_policy(self.path, self.redress)
        except ConfigError as exc:
            return exc
        except Exception as exc:   # noqa: BLE001 - whatever the file does, the running policy stays
            log.exception("policy %s: unexpected error while loading", self.path)
            return ConfigError(f"could not be loaded ({type(exc).__name__}: {exc}); keeping the running "
                               "policy", self.path)
