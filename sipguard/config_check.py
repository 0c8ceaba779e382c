"""``sipguard check-config``: every problem of a config file at once, not the first one.

``load_config`` stops at the first problem, which is what ``serve`` and a reload need. An
operator fixing a file wants the whole list: this runs the same section readers
``load_config`` uses (``config._listen``, ``ShakenConfig.from_section`` ...), each on its
own, so a problem in one section does not hide the next; inside a section a wrong value
that has a default is noted and the reader goes on with the default (``Section.sink``), so
it stops only at a wrong required value or a check of its own. Then the files the config names: every
problem of the policy, the trunk ids and limiter names its rules use
(``policy/names.py``), the signing key and certificate. When all of that passes,
``load_config`` itself runs for the checks across sections.

Reads files only; no sockets, no store.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar, cast

from sipguard import config as cfg
from sipguard import yamlconf
from sipguard.errors import ConfigError
from sipguard.yamlconf import Section

T = TypeVar("T")


def check_config(path: str, now: float) -> list[ConfigError]:
    """Every problem found in ``path`` and the files it names: the config's in line order,
    then the policy's. ``now`` judges the signing certificate's validity."""
    try:
        root = yamlconf.load(path)
    except ConfigError as exc:
        return [exc]
    base_dir = os.path.dirname(os.path.abspath(path))
    errors: list[ConfigError] = []
    root.sink = errors      # a wrong value with a default is noted and the section read on

    def step(fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except ConfigError as exc:
            errors.append(exc)
            return None

    for key in root.keys():
        if key not in cfg.TOP_KEYS:
            errors.append(root.error(key, f"unknown key; expected one of: {', '.join(cfg.TOP_KEYS)}"))
    step(lambda: cfg._listen(root))
    step(lambda: root.choice("mode", ("proxy", "redirect"), default="proxy"))
    step(lambda: cfg._next_hop(root, "next_hop"))
    step(lambda: root.choice("unknown_source", ("reject", "allow"), default="reject"))
    step(lambda: cfg._networks(root, "trusted_proxies"))
    trunks = _trunks(root, step)
    step(lambda: cfg._store(root))
    step(lambda: root.choice("store_failure", ("fail-open", "fail-closed"), default="fail-open"))
    step(lambda: root.number("store_timeout", default=0.05, minimum=0.001, maximum=10))
    datasets = step(lambda: root.section("datasets"))
    for key in datasets.keys() if datasets is not None else ():
        step(functools.partial(cfg._path, cast(Section, datasets), key, base_dir))
    _shaken(root, base_dir, now, step)
    redress = step(lambda: _redress(root))
    limits = step(lambda: _limits(root, trunks))
    step(lambda: _traceback(root, base_dir))
    step(lambda: _http(root, base_dir))
    step(lambda: cfg._proxy(root.section("proxy"), base_dir))
    step(lambda: cfg._log(root.section("log")))
    step(lambda: root.int("workers", default=1, minimum=1, maximum=64))
    step(lambda: _tls(root, base_dir))
    step(lambda: _analytics(root))
    step(lambda: _upstreams(root))
    policy_errors = _policy(root, base_dir, redress, [t.id for t in trunks],
                            [spec.name for spec in limits or ()], step)
    config_errors = sorted(_unique(errors), key=lambda e: e.line or 0)
    if not config_errors and not policy_errors:
        step(lambda: cfg.load_config(path))     # what spans sections (tls:// needs tls.cert ...)
        return errors
    return config_errors + policy_errors


def _trunks(root: Section, step: Callable[[Callable[[], Any]], Any]) -> list[cfg.Trunk]:
    sections = step(lambda: root.sections("trunks")) or []
    trunks = [t for t in (step(functools.partial(cfg._trunk, sec)) for sec in sections) if t is not None]
    step(lambda: cfg._check_unique_trunks(root, tuple(trunks)))
    return trunks


def _shaken(root: Section, base_dir: str, now: float, step: Callable[[Callable[[], Any]], Any]) -> None:
    from sipguard.shaken.config import ShakenConfig
    from sipguard.shaken.sign import Signer, SigningConfig

    shaken = step(lambda: root.section("shaken"))
    if shaken is None:
        return
    step(lambda: ShakenConfig.from_section(shaken, base_dir))
    signing_sec = step(lambda: shaken.section("signing"))
    if signing_sec is None or not signing_sec.keys():
        return
    signing = step(lambda: SigningConfig.from_section(cfg._resolved(signing_sec, base_dir, ("key", "cert"))))
    if signing is not None:
        step(lambda: Signer.load(signing, now))


def _redress(root: Section) -> Any:
    from sipguard.policy.model import Redress

    blocking = root.section("blocking")
    blocking.check_keys(("redress",))
    return Redress.from_section(blocking.section("redress"))


def _limits(root: Section, trunks: list[cfg.Trunk]) -> Any:
    from sipguard.store.base import parse_limits

    return parse_limits(root.section("limits"), {t.id: t.cps for t in trunks if t.cps})


def _traceback(root: Section, base_dir: str) -> Any:
    from sipguard.records.record import TracebackConfig

    try:
        store = cfg._store(root)
    except ConfigError:
        store = "memory"        # the store's own step reports it; records are checked as if local
    return TracebackConfig.from_section(root.section("traceback"), base_dir, store)


def _http(root: Section, base_dir: str) -> Any:
    from sipguard.observe.http_wire import HttpLimits

    http = root.section("http")
    http.check_keys(cfg.HTTP_KEYS)
    http.str("listen", default=None)
    http.bool("secure_cookie", default=False)
    HttpLimits.from_section(http)
    return cfg._http_token(http, base_dir)


def _analytics(root: Section) -> Any:
    from sipguard.detectors import Detectors

    return Detectors.from_section(root.section("analytics"))


def _upstreams(root: Section) -> Any:
    from sipguard.records.measures import UpstreamsConfig

    return UpstreamsConfig.from_section(root.section("upstreams"))


def _tls(root: Section, base_dir: str) -> Any:
    from sipguard.tls import TlsConfig

    return TlsConfig.from_section(root.section("tls"), base_dir)


def _policy(root: Section, base_dir: str, redress: Any, trunks: list[str], limiters: list[str],
            step: Callable[[Callable[[], Any]], Any]) -> list[ConfigError]:
    from sipguard.policy.loader import check_policy
    from sipguard.policy.names import check_names

    policy = step(lambda: cfg._path(root, "policy", base_dir))
    if policy is None:
        return []
    from sipguard.policy.names import configured_detectors

    problems = check_policy(policy, redress)
    detectors = configured_detectors(root.raw("analytics"))
    return sorted(problems + check_names(policy, trunks, limiters, detectors), key=lambda e: e.line or 0)


def _unique(errors: list[ConfigError]) -> list[ConfigError]:
    """Each problem once: a section two readers look at (trunks, limits) is noted by both."""
    unique: dict[str, ConfigError] = {}
    for error in errors:
        unique.setdefault(str(error), error)
    return list(unique.values())
