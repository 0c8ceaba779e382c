"""JSON Schemas of the config and the policy (``sipguard schema config|policy``), for editors.

An editor given a schema completes keys and flags a misspelt one while the file is typed;
sipguard's loaders stay the judge (``check-config``, ``policy check``). Both schemas come
from the loaders' own definitions so they cannot drift apart:

- the policy: the fact table (``policy/schema.py`` kinds and choices), the operators, the
  rule and action keys, the status codes and rule classes;
- the config: the key names each section accepts are asked of the section's reader itself
  (a config with one unknown key in that section, read by ``config_check``; the refusal
  lists what it expects), and the value types of the keys whose type is plain are added
  from ``CONFIG_TYPES`` (a key without an entry takes any value in the schema).

docs/schema/ holds the generated files; a test keeps them equal to what this prints.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from typing import Any

DRAFT = "https://json-schema.org/draft/2020-12/schema"
_PROBE = "zz_not_a_key"
_EXPECTED = re.compile(r"unknown key; expected one of: (.*)$")

# -- the policy ------------------------------------------------------------------------------


def policy_schema() -> dict[str, Any]:
    from sipguard.policy.actions import ACTIONS, FORWARD_KEYS, REJECT_KEYS
    from sipguard.policy.conditions import OPERATORS
    from sipguard.policy.loader import MODES, RULE_KEYS, SUPPORTED_VERSIONS, TOP_KEYS
    from sipguard.policy.model import RULE_CLASSES, STATUS_PHRASES
    from sipguard.policy.schema import FACT_KINDS

    action_fields: dict[str, Any] = {
        "action": {"enum": list(ACTIONS)},
        "class": {"enum": list(RULE_CLASSES)},
        "status": {"anyOf": [{"enum": sorted(STATUS_PHRASES)}, {"const": "603+"}],
                   "description": "SIP failure code, or 603+ (603 with the redress contact)"},
        "reason": {"type": "string"},
        "retry_after": {"type": "integer", "minimum": 0, "maximum": 86400},
        "sign": {"type": "boolean"},
        "tag": {"type": "object", "additionalProperties": False,
                "properties": {"display_prefix": {"type": "string"}, "passports": {"type": "boolean"},
                               "headers": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "to": {"type": "string", "description": "next hop for this call: a sip: URI"},
    }
    assert set(action_fields) == {"action", *REJECT_KEYS, *FORWARD_KEYS}, "an action key has no schema"
    facts: dict[str, Any] = {name: _fact(kind, OPERATORS) for name, kind in FACT_KINDS.items()}
    when: dict[str, Any] = {
        "type": "object", "additionalProperties": False,
        "properties": {**facts,
                       "any": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/when"}},
                       "all": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/when"}},
                       "not": {"$ref": "#/$defs/when"}},
    }
    rule_props: dict[str, Any] = {"name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:-]*$"},
                                  "description": {"type": "string"}, "when": {"$ref": "#/$defs/when"},
                                  **{k: action_fields[k] for k in RULE_KEYS if k in action_fields}}
    assert set(rule_props) == set(RULE_KEYS), "a rule key has no schema"
    rule = {"type": "object", "additionalProperties": False, "required": ["name", "action"],
            "properties": rule_props}
    top = {"version": {"enum": list(SUPPORTED_VERSIONS)}, "mode": {"enum": list(MODES)},
           "description": {"type": "string"},
           "default": {"type": "object", "additionalProperties": False, "required": ["action"],
                       "properties": dict(action_fields)},
           "rules": {"type": "array", "items": {"$ref": "#/$defs/rule"}}}
    assert set(top) == set(TOP_KEYS), "a policy key has no schema"
    return {"$schema": DRAFT, "title": "sipguard policy", "type": "object", "additionalProperties": False,
            "required": ["version"], "properties": top, "$defs": {"when": when, "rule": rule}}


def _fact(kind: Any, operators: tuple[str, ...]) -> dict[str, Any]:
    value: dict[str, Any]
    if kind.kind == "bool":
        value = {"type": "boolean"}
    elif kind.kind == "enum":
        value = {"enum": list(kind.choices)}
    elif kind.kind == "digits":
        value = {"type": ["string", "integer"]}
    elif kind.kind == "number":
        value = {"type": "integer"}
    elif kind.kind == "list":
        value = {"enum": list(kind.choices)} if kind.choices else {"type": "string"}
    else:   # text, ip
        value = {"type": "string"}
    if kind.nullable:
        value = {"anyOf": [value, {"type": "null"}]}
    values = {"type": "array", "minItems": 1, "items": value}
    ops: dict[str, Any] = {"in": values, "not": {"anyOf": [value, values]}}
    if kind.kind == "number":
        ops.update({op: value for op in ("gt", "gte", "lt", "lte")})
    elif kind.kind != "bool":
        ops["prefix"] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
        ops["matches"] = {"type": "string"}
        if kind.kind not in ("ip", "list"):
            ops.update({op: value for op in ("gt", "gte", "lt", "lte")})
    assert set(ops) <= set(operators)
    compare = {"type": "object", "additionalProperties": False, "minProperties": 1, "properties": ops}
    return {"description": kind.describe(), "anyOf": [value, values, compare]}


# -- the config ------------------------------------------------------------------------------

# Where a section sits in a config, how to put a probe key into it.
_SECTIONS: dict[str, Any] = {
    "": {},
    "trunks[]": {"trunks": [{"id": "probe", "sources": ["192.0.2.1"]}]},
    "trunks[].provider": {"trunks": [{"id": "probe", "sources": ["192.0.2.1"], "provider": {}}]},
    "shaken": {"shaken": {}},
    "shaken.x5u": {"shaken": {"x5u": {}}},
    "shaken.crl": {"shaken": {"crl": {}}},
    "shaken.signing": {"shaken": {"signing": {}}},
    "shaken.identity": {"shaken": {"identity": {}}},
    "shaken.trust_list": {"shaken": {"trust_list": {}}},
    "shaken.replay": {"shaken": {"replay": {}}},
    "shaken.rcd": {"shaken": {"rcd": {}}},
    "blocking": {"blocking": {}},
    "blocking.redress": {"blocking": {"redress": {}}},
    "limits.*": {"limits": {"probe": {"key": "caller", "rate": "1/s"}}},
    "traceback": {"traceback": {}},
    "upstreams": {"upstreams": {}},
    "http": {"http": {}},
    "proxy": {"proxy": {}},
    "proxy.tcp": {"proxy": {"tcp": {}}},
    "log": {"log": {}},
    "tls": {"tls": {}},
    "analytics": {"analytics": {}},
    "analytics.campaign": {"analytics": {"campaign": {}}},
    "analytics.campaign.fanout": {"analytics": {"campaign": {"fanout": {}}}},
    "analytics.campaign.burst": {"analytics": {"campaign": {"burst": {}}}},
}

_STR = {"type": "string"}
_STRINGS = {"type": "array", "items": _STR}
_BOOL = {"type": "boolean"}
_INT = {"type": "integer"}
_NUM = {"type": "number"}

# Value types of the keys whose type is plain (the loader still checks ranges and formats).
CONFIG_TYPES: dict[str, Any] = {
    "listen": {"type": "array", "items": {"type": "string", "pattern": "^(udp|tcp|tls)://"}},
    "mode": {"enum": ["proxy", "redirect"]},
    "next_hop": {"type": "string", "pattern": "^sips?:"},
    "unknown_source": {"enum": ["reject", "allow"]},
    "trusted_proxies": _STRINGS,
    "store": _STR,
    "store_failure": {"enum": ["fail-open", "fail-closed"]},
    "store_timeout": _NUM,
    "datasets": {"type": "object", "additionalProperties": _STR},
    "policy": _STR,
    "workers": {"type": "integer", "minimum": 1, "maximum": 64},
    "trunks[].id": _STR, "trunks[].role": {"enum": ["foreign", "domestic"]}, "trunks[].sources": _STRINGS,
    "trunks[].cps": _NUM, "trunks[].next_hop": {"type": "string", "pattern": "^sips?:"},
    "trunks[].provider.name": _STR, "trunks[].provider.frn": _STR, "trunks[].provider.rmd": _STR,
    "trunks[].provider.country": _STR, "trunks[].provider.contact": _STR,
    "shaken.trust_anchors": _STR, "shaken.iat_max_age": _INT, "shaken.iat_max_future": _INT,
    "shaken.x5u.timeout": _NUM, "shaken.x5u.ports": {"type": "array", "items": _INT},
    "shaken.x5u.allow_http": _BOOL, "shaken.x5u.allow_networks": _STRINGS, "shaken.x5u.allow_private": _BOOL,
    "shaken.x5u.max_bytes": _INT, "shaken.x5u.cache_size": _INT,
    "shaken.crl.enabled": _BOOL, "shaken.crl.failure": {"enum": ["fail-open", "fail-closed"]},
    "shaken.signing.key": _STR, "shaken.signing.cert": _STR, "shaken.signing.x5u": _STR,
    "shaken.signing.attest": {"enum": ["A", "B", "C"]}, "shaken.signing.origid": {"enum": ["trunk", "call"]},
    "shaken.signing.sign_failed": _BOOL, "shaken.signing.spc": _STR,
    "shaken.identity.lenient": {"type": "array", "items": {"enum": ["alg", "ppt"]}},
    "shaken.identity.max_headers": _INT, "shaken.replay.enabled": _BOOL, "shaken.rcd.fetch": _BOOL,
    "shaken.trust_list.url": _STR, "shaken.trust_list.sti_pa_root": _STR,
    "http.max_connections": _INT, "http.max_body": _INT, "http.read_timeout": _NUM,
    "blocking.redress.url": _STR, "blocking.redress.tel": _STR, "blocking.redress.email": _STR,
    "limits.*.key": {"anyOf": [_STR, _STRINGS]}, "limits.*.rate": _STR, "limits.*.burst": _INT,
    "traceback.retention_days": _NUM, "traceback.path": _STR, "traceback.spool": _STR, "traceback.store": _STR,
    "http.listen": _STR, "http.token_file": _STR, "http.secure_cookie": _BOOL,
    "upstreams.score_interval": _NUM, "upstreams.score_window": _NUM, "upstreams.score_min_calls": _INT,
    "proxy.record_route": _BOOL, "proxy.max_pending": _INT, "proxy.max_message_size": _INT,
    "proxy.retry_after": _INT, "proxy.instance": _STR, "proxy.advertise": _STR,
    "proxy.steering": {"enum": ["transaction", "peer"]},
    "log.level": {"enum": ["debug", "info", "warning", "error"]},
    "analytics.campaign.max_keys": _INT,
    "analytics.campaign.fanout.window": _NUM, "analytics.campaign.fanout.callees": _INT,
    "analytics.campaign.burst.window": _NUM, "analytics.campaign.burst.calls": _INT,
    "analytics.campaign.burst.prefix": _INT,
}


def config_keys() -> dict[str, list[str]]:
    """Section -> the keys its reader accepts, asked of the reader (see the module doc)."""
    from sipguard.config_check import check_config

    out: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for section, data in _SECTIONS.items():
            node: Any = data
            for part in section.replace("[]", "").replace(".*", ".probe").split(".") if section else []:
                node = node[part]
                node = node[0] if isinstance(node, list) else node
            (node if section else data)[_PROBE] = 1
            path = os.path.join(folder, "probe.yaml")
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(data, fh)     # JSON is YAML
            refusals = [p.message for p in check_config(path, 0.0) if (p.key or "").endswith(_PROBE)]
            match = _EXPECTED.match(refusals[0]) if refusals else None
            if match is None:
                raise RuntimeError(f"the reader of {section or 'the top level'} did not refuse an unknown key")
            out[section] = match.group(1).split(", ")
    return out


def config_schema() -> dict[str, Any]:
    keys = config_keys()

    def section(name: str) -> dict[str, Any]:
        props: dict[str, Any] = {}
        for key in keys[name]:
            dotted = f"{name}.{key}" if name else key
            if dotted == "limits":
                props[key] = {"type": "object", "additionalProperties": section("limits.*")}
            elif f"{dotted}[]" in keys:
                props[key] = {"type": "array", "items": section(f"{dotted}[]")}
            elif dotted in keys:
                props[key] = section(dotted)
            else:
                props[key] = CONFIG_TYPES.get(dotted, {})
        return {"type": "object", "additionalProperties": False, "properties": props}

    return {"$schema": DRAFT, "title": "sipguard config", **section("")}


def render(which: str) -> str:
    schema = config_schema() if which == "config" else policy_schema()
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"
