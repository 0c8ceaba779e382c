"""Write docs/reference.md from the code: ``python docs/make_reference.py > docs/reference.md``.

The names come from where sipguard defines them, so the reference cannot list a key, a fact
or a code that does not exist, nor miss one: the commands and options from the argparse
tree, the config keys from each section's reader (``sipguard.jsonschema.config_keys``), the
policy facts from the fact table, the operators, actions, reason codes and responses, the
replay fields and the metrics from their modules. What a name means is written here, once;
a name without a description stops this script (and so tests/unit/test_reference_doc.py,
which also checks that docs/reference.md is this script's output).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["COLUMNS"] = "100"   # argparse wraps usage lines to the terminal: make them fixed

# -- what each name means -------------------------------------------------------------------------

# config key (dotted; [] a list item, NAME any name) -> (default, meaning)
CONFIG_HELP: dict[str, tuple[str, str]] = {
    "listen": ('["udp://127.0.0.1:5060", "tcp://127.0.0.1:5060"]',
               "addresses to listen on: `udp://HOST:PORT`, `tcp://HOST:PORT`, `tls://HOST:PORT` (5061 by default; "
               "needs `tls.cert` and `tls.key`); IPv6 as `udp://[::1]:5060`"),
    "mode": ("proxy", "`proxy`: forward accepted calls to the next hop (stateful for INVITE); `redirect`: answer "
                      "every INVITE with a 302 (Contact: the next hop, verstat, Identity and tags in headers) or "
                      "with the rejection"),
    "next_hop": ("required", "where accepted calls go: `sip:HOST[:PORT][;transport=udp|tcp|tls]` or "
                             "`sips:HOST[:PORT]`"),
    "unknown_source": ("reject", "traffic from an address no trunk lists: `reject` (403 Forbidden) or `allow` "
                                 "(decided with trunk null); emergency calls are never rejected"),
    "trusted_proxies": ("[]", "front proxies (Kamailio, an SBC) whose `X-Sipguard-Source: ip:port` header, else "
                              "the Via below their own, names the real upstream"),
    "trunks": ("[]", "the upstream providers, by source address (longest prefix wins)"),
    "trunks[].id": ("required", "the trunk's name in records, metrics and the policy fact `trunk`"),
    "trunks[].role": ("foreign", "`foreign`: an international trunk, gateway duties apply (sign, RMD, DNO); "
                                 "`domestic`: a US provider"),
    "trunks[].sources": ("required", "addresses or CIDRs the trunk's traffic comes from"),
    "trunks[].provider": ("{}", "who the upstream provider is (traceback answers, RMD lookups)"),
    "trunks[].provider.name": ("null", "the provider's name"),
    "trunks[].provider.frn": ("null", "its FCC Registration Number (10 digits, quoted)"),
    "trunks[].provider.rmd": ("null", "its Robocall Mitigation Database number (RMD + 7 digits)"),
    "trunks[].provider.country": ("null", "its country (ISO 3166 code)"),
    "trunks[].provider.contact": ("null", "where the ITG sends the traceback next (`sipguard traceback answer`)"),
    "trunks[].cps": ("null", "contracted calls per second (a limit with `rate: trunk.cps` uses it)"),
    "trunks[].next_hop": ("the global one", "this trunk's next hop"),
    "store": ("memory", "`memory` (embedded, one process) or a Redis URL shared by every instance: "
                        "`redis://`, `rediss://`, `redis+sentinel://HOSTS/MASTER/DB`, `redis+cluster://HOSTS`"),
    "store_failure": ("fail-open", "when the store does not answer in `store_timeout`: `fail-open` decides the "
                                   "call anyway (fact `store.degraded`), `fail-closed` answers 503 + Retry-After "
                                   "(never to an emergency call)"),
    "store_timeout": ("0.05", "seconds a store lookup may take; under overload new INVITEs are shed once "
                              "decisions have waited half of it on Redis (`proxy.shed_delay`)"),
    "datasets": ("{}", "data files loaded at start and reloaded on change (memory store): `rmd` (FCC RMD CSV "
                       "export), `rmd_removed` (providers removed from it), `dno` (Do-Not-Originate numbers and "
                       "prefixes), `ocn_map` (OCN/SPC to FRN/RMD), `lists` (allow/block lists: "
                       "`allow|block KIND VALUE [note]`), `c_cist` and `threats` (threat lists of the FCC's C-CIST designations "
                       "and the operator's own: `kind,value,ref,note`). With Redis use the `rmd`, `dno`, `list`, "
                       "`threats` commands"),
    "shaken": ("{}", "STIR/SHAKEN verification and signing"),
    "shaken.trust_anchors": ("null", "STI-CA roots: a PEM file or a folder of them; re-read on SIGHUP"),
    "shaken.iat_max_age": ("60", "seconds a PASSporT's iat may lie in the past (else `stale-iat`)"),
    "shaken.iat_max_future": ("5", "seconds it may lie in the future (clock skew; else `future-iat`)"),
    "shaken.x5u": ("{}", "how certificates are downloaded"),
    "shaken.x5u.timeout": ("2.0", "seconds for connect and download"),
    "shaken.x5u.ports": ("[443, 8443]", "ports an https x5u URL may use"),
    "shaken.x5u.allow_http": ("false", "also accept http:// x5u URLs"),
    "shaken.x5u.allow_networks": ("[]", "networks exempt from the address guard (then any port); a special-use "
                                        "network needs `allow_private`"),
    "shaken.x5u.allow_private": ("false", "allow private, loopback and other special-use networks in "
                                          "`allow_networks` (a lab only)"),
    "shaken.x5u.tls_ca_bundle": ("null", "web-PKI CAs for the HTTPS download (null: the system's); not the STI roots"),
    "shaken.x5u.max_bytes": ("65536", "largest certificate download"),
    "shaken.x5u.cache_size": ("10000", "certificates kept in memory per worker"),
    "shaken.x5u.negative_ttl": ("30", "seconds a failed download is remembered per URL"),
    "shaken.x5u.stale_grace": ("3600", "seconds a cached certificate is still used past its cache lifetime while "
                                       "it is refreshed or its host is down (never past notAfter; 0: off)"),
    "shaken.x5u.trunk_fetch_rate": ("10", "downloads of uncached URLs one trunk may start per second (0: no limit)"),
    "shaken.x5u.trunk_fetch_burst": ("100", "and at once"),
    "shaken.crl": ("{}", "certificate revocation"),
    "shaken.crl.enabled": ("true", "check each certificate's CRL distribution point"),
    "shaken.crl.failure": ("fail-open", "CRL unreachable: `fail-open` (accept) or `fail-closed` (`cert-revoked`)"),
    "shaken.signing": ("none", "the authentication service: sign when a rule says `sign: true`"),
    "shaken.signing.key": ("required", "the signing key (PEM, EC P-256, unencrypted)"),
    "shaken.signing.cert": ("required", "its certificate with TNAuthList (SPC) from the STI-CA"),
    "shaken.signing.x5u": ("required", "the https URL where that certificate is published"),
    "shaken.signing.attest": ("C", "attestation level `A`, `B` or `C` (gateway: C)"),
    "shaken.signing.origid": ("trunk", "`trunk`: one stable origid per trunk; `call`: a new one per call"),
    "shaken.signing.sign_failed": ("false", "also sign calls whose own Identity failed verification"),
    "shaken.signing.spc": ("none", "our own SPC: the certificate must carry it (FCC 24-120)"),
    "blocking": ("{}", "blocked-call signalling"),
    "blocking.redress": ("{}", "the redress contact in the Reason of every 603+ (Network Blocked) response"),
    "blocking.redress.url": ("null", "a web page to dispute a block"),
    "blocking.redress.tel": ("null", "a telephone number for it"),
    "blocking.redress.email": ("null", "an email address for it"),
    "blocking.redress.location": ("TN", "the RFC 8606 location of the Reason header"),
    "limits": ("{}", "rate limits (GCRA, exact across instances with Redis), by name; a call over one shows "
                     "its name in the fact `limited`"),
    "limits.NAME.key": ("required", "what is counted: `trunk`, `source`, `caller`, `callee`, `spc`, or a list"),
    "limits.NAME.rate": ("required", "`N/s`, `N/min`, `N/h`, or `trunk.cps`"),
    "limits.NAME.burst": ("the rate of one second", "calls allowed at once"),
    "policy": ("built-in default", "the policy file; watched and reloaded"),
    "traceback": ("{}", "call records for traceback"),
    "traceback.retention_days": ("548", "days records are kept (47 CFR 42.6: 18 months)"),
    "traceback.path": ("var/traceback.db", "the SQLite file of the memory store's records"),
    "traceback.spool": ("var/spool", "folder holding records while the record store is unreachable"),
    "traceback.store": ("the top-level store", "where records go: `sqlite` (the file `traceback.path`), `redis` "
                        "(the store's Stream: at most 7 days of retention), or a `postgresql://` URL (one table "
                        "partitioned by day; `sipguard db migrate`)"),
    "traceback.queue": ("10000", "records queued for the writer; past it they wait in an overflow list in memory (counted as spilled), never dropped; with SQLite, past the larger of this and four `traceback.batch`, new INVITEs get 503 + Retry-After (the overload guard, when `proxy.shed_delay` is not 0) until the writer catches up"),
    "traceback.batch": ("500", "records written per batch"),
    "upstreams": ("{}", "know your upstream: the refresh of `trunk.score` (README: Know your upstream)"),
    "upstreams.score_interval": ("60", "seconds between two computations of `trunk.score` in each worker, from "
                                       "the records; 0: off (the fact stays null)"),
    "upstreams.score_window": ("3600", "seconds of records the score is computed over (60 .. 31 days), in the "
                                     "whole minutes they touch, the one under way included"),
    "upstreams.score_min_calls": ("50", "calls a trunk needs in the window to have a score (fewer: null)"),
    "http": ("none", "the admin HTTP server"),
    "http.listen": ("none", "`HOST:PORT` of /metrics, /healthz, /readyz, /traceback, /upstreams, /admin"),
    "http.token_file": ("none", "a file holding the bearer token (16+ characters) /traceback and /admin require; "
                                "required when listen is not loopback"),
    "proxy": ("{}", "proxy tuning"),
    "proxy.record_route": ("false", "stay in the dialog (Record-Route)"),
    "proxy.max_pending": ("2000", "INVITEs waiting for a decision; past it 503 at once"),
    "proxy.max_message_size": ("65535", "largest SIP message accepted"),
    "proxy.retry_after": ("5", "seconds, in 503 responses"),
    "proxy.transaction_timeout": ("32", "seconds a transaction is remembered"),
    "proxy.instance": ("hostname", "name in records and logs"),
    "proxy.advertise": ("none", "`HOST[:PORT]` for our Via and Record-Route when listening on 0.0.0.0"),
    "proxy.steering": ("transaction", "with several workers, which handles a UDP request: `transaction` (the "
                                      "owner of its transaction) or `peer` (the kernel's choice by source)"),
    "proxy.secret_file": ("none (one key per start)", "16+ random bytes that sign our Record-Route and branches; "
                                                      "the same on every instance of a pool"),
    "proxy.drain_timeout": ("15", "SIGTERM: seconds calls in progress may take to finish"),
    # keys other branches bring (issues "Overload", "Admin HTTP", "STIR/SHAKEN"): described here
    # ahead of their merge; the reference lists a key only once its reader accepts it
    "proxy.shed_delay": ("0.02", "seconds work may wait (event-loop lag, the oldest queued datagram; with "
                                 "Redis, a decision waiting half of `store_timeout` on it counts as this, and so do "
                                 "`traceback.queue` records waiting for the SQLite writer) before "
                                 "new INVITEs get 503 + Retry-After; 0: off"),
    "proxy.allocator": ("auto", "where serve's memory comes from: auto (jemalloc when installed, so a burst's "
                                "memory goes back; serve starts itself again on it, same PID), jemalloc (the "
                                "same, warns when missing), python (Python's own allocator); restart to change"),
    "proxy.tcp": ("{}", "TCP and TLS connection limits, per worker"),
    "proxy.tcp.head_timeout": ("10", "seconds a message or TLS handshake may take to arrive"),
    "proxy.tcp.idle_timeout": ("60", "seconds a connection may stay silent"),
    "proxy.tcp.max_connections": ("1000", "inbound connections at once"),
    "proxy.tcp.max_per_source": ("32", "inbound connections from one address"),
    "proxy.tcp.fd_reserve": ("64", "file descriptors kept free for x5u fetches, the store, records, HTTP"),
    "http.max_connections": ("64", "admin HTTP connections at once; more get 503"),
    "http.max_body": ("65536", "largest request body, in bytes (413 over it)"),
    "http.read_timeout": ("5.0", "seconds for a whole request to arrive (408)"),
    "http.secure_cookie": ("false", "`true` behind a TLS proxy: the console's session cookie is marked `Secure` "
                                    "(never sent over plain HTTP); `false` when browsers reach the listener by "
                                    "`http://`"),
    "shaken.identity": ("{}", "how strictly Identity headers are read"),
    "shaken.identity.lenient": ("[]", "Identity parameters that may be absent: `alg` (then ES256), `ppt`"),
    "shaken.identity.max_headers": ("8", "Identity header values a call may carry (1-32); more: "
                                         "`too-many-identity`, nothing verified"),
    "shaken.rcd": ("{}", "rich call data (RFC 9795) content"),
    "shaken.rcd.fetch": ("false", "download what an rcd PASSporT's `rcdi` names by URL (logo, jCard) to check "
                                  "its digest, with the x5u rules; only after its signature verified"),
    "shaken.replay": ("{}", "PASSporT replay detection"),
    "shaken.replay.enabled": ("true", "remember each verified PASSporT signature until it goes stale; "
                                      "on another Call-ID it sets `passport.replayed`"),
    "shaken.trust_list": ("none", "the STI-PA's list of approved STI-CAs, installed as `trust_anchors` by "
                                  "`sipguard trust update`"),
    "shaken.trust_list.url": ("required", "where the signed list is published"),
    "shaken.trust_list.sti_pa_root": ("required", "the root the list's signer chains to"),
    "log": ("{}", "logging"),
    "log.level": ("info", "`debug`, `info`, `warning`, `error`"),
    "log.decisions": ("info", "level of the one JSON line per decision: `info`, `debug`, `off`"),
    "workers": ("1", "processes sharing the ports (`serve --workers` wins)"),
    "tls": ("{}", "SIP over TLS (1.2 or newer)"),
    "tls.cert": ("none", "our certificate chain (PEM), to listen on tls://"),
    "tls.key": ("none", "its key"),
    "tls.ca": ("the system's", "CAs trusted for peers"),
    "tls.verify_client": ("false", "mutual TLS: a trunk must present a certificate from `ca`"),
    "tls.verify_server": ("true", "check the next hop's certificate"),
    "tls.server_name": ("the next hop's host", "the name the next hop's certificate must carry (SNI)"),
    "analytics": ("{}", "detectors on live traffic (README, \"Detectors and threat lists\")"),
    "analytics.campaign": ("{}", "the windowed detectors, kept in the store (Redis: in the call's one round trip)"),
    "analytics.campaign.max_keys": ("100000", "memory store: callers (fanout) and prefixes (burst) tracked at "
                                              "once, each; the oldest window goes first when full"),
    "analytics.campaign.fanout": ("off", "fact `campaign.fanout`: one caller reaching many distinct callees"),
    "analytics.campaign.fanout.window": ("required", "seconds (1 to 86400); the window opens at the caller's "
                                                     "first call"),
    "analytics.campaign.fanout.callees": ("required", "distinct callees in one window that make the fact true "
                                                      "(2 to 512)"),
    "analytics.campaign.burst": ("off", "fact `campaign.burst`: many calls from one caller prefix"),
    "analytics.campaign.burst.window": ("required", "seconds (1 to 86400); opened by the prefix's first call"),
    "analytics.campaign.burst.calls": ("required", "calls in one window that make the fact true (2 or more)"),
    "analytics.campaign.burst.prefix": ("7", "leading digits of the caller's E.164 number counted together "
                                             "(1 to 15; 7 = 1 + NPA-NXX, 8 = a thousands block, 4 = a whole NPA)"),
}

FACT_HELP: dict[str, str] = {
    "verstat": "the verification result",
    "attest": "the attestation of the PASSporT that verified",
    "reasons": "verification reason codes (below)",
    "trunk": "the trunk id the call came from (null: none)",
    "trunk.role": "its role",
    "trunk.rmd": "its provider in the Robocall Mitigation Database",
    "trunk.implementation": "the provider's RMD implementation status text",
    "trunk.frn": "the provider's FRN",
    "trunk.score": "the trunk's reputation 0..100 over its recent records (README: Know your upstream); "
                   "null: too few calls or no records yet",
    "signer.spc": "the SPC of the certificate that signed",
    "signer.rmd": "the signer in the RMD (through `ocn_map`)",
    "source.ip": "the upstream address",
    "caller": "the calling number (E.164 digits)",
    "callee": "the called number",
    "caller.nanp": "the caller is an NANP number",
    "caller.us": "the caller is a US number (territories included)",
    "caller.valid": "the caller is a valid, assignable number",
    "caller.invalid_reason": "why not",
    "caller.dno": "the caller is on the Do-Not-Originate list",
    "caller.anonymous": "no calling number",
    "list": "the operator list matching the call",
    "limited": "names of the limits the call exceeds",
    "notice": "reference of a matching Commission-notice rule",
    "store.degraded": "the store did not answer (fail-open)",
    "campaign.fanout": "the caller reached `analytics.campaign.fanout.callees` distinct callees in its window "
                       "(null: detector off or store down)",
    "campaign.burst": "the caller's prefix reached `analytics.campaign.burst.calls` calls in its window "
                      "(null: detector off or store down)",
    "spoof.neighbor": "caller and callee are NANP numbers with the same NPA-NXX (not the same number)",
    "spoof.same": "caller == callee",
    "spoof.us_cid_foreign_trunk": "a US caller without Identity on a trunk of role `foreign`",
    "spoof.a_on_bad_number": "attestation A verified on an invalid or DNO caller (null: DNO unknown)",
    "trunk.threat": "the trunk's provider (FRN, name, source network) is on a threat list: its source",
    "signer.threat": "the signer (SPC, or its FRN through `ocn_map`) is on a threat list: its source",
    "div.count": "div PASSporTs on the call (RFC 8946)",
    "div.verstat": "the div chain: Passed when every div verified and links to the shaken PASSporT, "
                   "the div before and the History-Info/Diversion; Failed otherwise; No-TN-Validation without div",
    "rcd.present": "an rcd PASSporT (RFC 9795) came with the call",
    "rcd.verified": "every rcd PASSporT verified, inline `rcdi` digests included (null: no rcd)",
    "passport.replayed": "the verified PASSporT's signature was seen on another call while fresh "
                         "(null: the store did not answer)",
}

OPERATOR_HELP: dict[str, str] = {
    "gt": "greater than", "gte": "greater or equal", "lt": "less than", "lte": "less or equal",
    "not": "none of the value or list", "in": "any of the list", "prefix": "starts with (a string or a list)",
    "matches": "a regular expression (RE2: linear time) found in the value",
}

REPLAY_HELP: dict[str, str] = {
    "time": "capture time of the INVITE (epoch seconds)",
    "call_id": "its Call-ID",
    "source": "`ip:port` it came from in the capture",
    "trunk": "the trunk it was decided as (null: none)",
    "caller": "calling number (E.164 digits)",
    "callee": "called number",
    "verstat": "verification result",
    "attest": "`A`, `B`, `C` or null",
    "reasons": "verification reason codes; `malformed-sip` for an INVITE that does not parse",
    "spc": "the signer's SPC",
    "rule": "the rule that decided (null: the default)",
    "action": "`reject` or `forward`",
    "status": "the rejection's status code (null when forwarded)",
    "signed": "sipguard signed the call",
}

# -- the document --------------------------------------------------------------------------------


def cell(text: str) -> str:
    """Text for a Markdown table cell: a | inside (udp|tcp) would end the cell."""
    return text.replace("|", "\\|")


def commands() -> list[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    from sipguard.cli import build_parser

    out: list[tuple[tuple[str, ...], argparse.ArgumentParser, str]] = []

    def walk(parser: argparse.ArgumentParser, path: tuple[str, ...], help_text: str) -> None:
        out.append((path, parser, help_text))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {c.dest: c.help or "" for c in action._choices_actions}
                for name, sub in action.choices.items():
                    walk(sub, (*path, name), helps.get(name, ""))

    walk(build_parser(), (), "")
    return out


def command_section() -> list[str]:
    lines = ["## Command line", "",
             "A command exits 0 on success and 1 on an error it explains (one line naming the file, line "
             "and key; `check-config` and `policy check` list every problem); `traceback` exits 3 when no "
             "record matched. `--help` shows the text below.", ""]
    for path, parser, help_text in commands():
        if not path:
            continue
        lines += [f"### sipguard {' '.join(path)}", "", help_text[:1].upper() + help_text[1:] + ".", "",
                  "```", parser.format_usage().strip().replace("usage: ", ""), "```", ""]
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = ", ".join(action.option_strings) or (action.metavar or action.dest)
            if action.option_strings and action.nargs != 0:
                name += f" {action.metavar or action.dest.upper()}"
            lines.append(f"- `{name}`: {action.help}")
        if lines[-1]:
            lines.append("")
    return lines


def config_section() -> list[str]:
    from sipguard.jsonschema import config_keys

    lines = ["## Configuration keys", "",
             "A YAML file; relative paths are relative to its folder. `sipguard check-config` lists every "
             "problem as `file:line: key: message`; `sipguard schema config` prints a JSON Schema for "
             "editors (docs/schema/config.schema.json). `config/sipguard.example.yaml` shows them in use.", "",
             "| key | default | meaning |", "|---|---|---|"]
    missing = []
    for section, keys in config_keys().items():
        prefix = section.replace(".*", ".NAME")
        for key in keys:
            dotted = f"{prefix}.{key}" if prefix else key
            if dotted not in CONFIG_HELP:
                missing.append(dotted)
                continue
            default, meaning = CONFIG_HELP[dotted]
            lines.append(f"| `{cell(dotted)}` | {cell(default)} | {cell(meaning)} |")
    if missing:
        raise SystemExit(f"docs/make_reference.py: no description for config keys: {', '.join(missing)}")
    return [*lines, ""]


def policy_section() -> list[str]:
    from sipguard.policy.actions import ACTIONS, FORWARD_KEYS, REJECT_KEYS
    from sipguard.policy.conditions import OPERATORS
    from sipguard.policy.facts import FACT_NAMES
    from sipguard.policy.loader import MODES, TOP_KEYS
    from sipguard.policy.model import RULE_CLASSES, STATUS_PHRASES
    from sipguard.policy.schema import FACT_KINDS

    missing = [n for n in FACT_NAMES if n not in FACT_HELP] + [o for o in OPERATORS if o not in OPERATOR_HELP]
    if missing:
        raise SystemExit(f"docs/make_reference.py: no description for: {', '.join(missing)}")
    lines = ["## Policy file", "",
             f"Top-level keys: {', '.join(f'`{k}`' for k in TOP_KEYS)}; `mode` is "
             f"{' or '.join(f'`{m}`' for m in MODES)} (shadow: decide and record, forward every call). "
             "Rules are tried in order; the first whose `when` matches decides, else `default`. Keys in `when` "
             "are ANDed, a list value means any of, `any:`/`all:` take a list of conditions, `not:` one. "
             "Emergency calls (911, `urn:service:sos`) are never rejected. `sipguard schema policy` prints a "
             "JSON Schema (docs/schema/policy.schema.json).", "",
             "### Facts", "", "| fact | values | meaning |", "|---|---|---|"]
    for name in FACT_NAMES:
        kind = FACT_KINDS[name]
        values = kind.describe() + (", or null" if kind.nullable else "")
        lines.append(f"| `{name}` | {cell(values)} | {cell(FACT_HELP[name])} |")
    lines += ["", "### Operators", "", "| operator | compares |", "|---|---|"]
    lines += [f"| `{op}` | {OPERATOR_HELP[op]} |" for op in OPERATORS]
    lines += ["", "### Actions", "",
              f"`action`: {' or '.join(f'`{a}`' for a in ACTIONS)}. With `reject`: "
              f"{', '.join(f'`{k}`' for k in REJECT_KEYS)}; with `forward`: {', '.join(f'`{k}`' for k in FORWARD_KEYS)}.",
              "",
              f"- `class`: {', '.join(f'`{c}`' for c in RULE_CLASSES)}. A `deterministic` or `notice` reject "
              "without `status` is 603 Decline with `Reason: Q.850;cause=21`; an `analytics` one is 603+ "
              "(603 Network Blocked with the redress contact).",
              f"- `status`: one of {', '.join(str(s) for s in sorted(STATUS_PHRASES))}, or `603+`. Without "
              "`status` or `class`, the RFC 8224 response of the call's first reason code (below).",
              "- `reason`: text of the Reason header; `retry_after`: seconds, with 503 only.",
              "- `sign`: sign the call (gateway attestation, `shaken.signing`); `tag`: `display_prefix` and "
              "`headers` to add, `passports: true` for the div/rcd/replay results as X-Sipguard-Div, "
              "X-Sipguard-Rcd, X-Sipguard-Replayed (also on redirect mode's 302); `to`: a `sip:` URI to send this call to instead of the next hop.", ""]
    return lines


def reasons_section() -> list[str]:
    from sipguard.replay.runner import MALFORMED
    from sipguard.shaken.reasons import RFC8224_RESPONSE, Reason, Verstat

    lines = ["## Verification results", "",
             f"verstat: {', '.join(f'`{v.value}`' for v in Verstat)}.", "",
             "| reason code | response when a rule rejects without `status` |", "|---|---|"]
    for reason in Reason:
        status, phrase = RFC8224_RESPONSE.get(reason, (403, "Forbidden"))
        lines.append(f"| `{reason.value}` | {status} {phrase} |")
    lines += [f"| `{MALFORMED}` | 400 Bad Request (replay only: an INVITE that does not parse) |", ""]
    return lines


def replay_section() -> list[str]:
    import dataclasses

    from sipguard.replay.runner import ReplayDecision

    sample = ReplayDecision(0.0, None, "", None, None, None, "", None, (), None, None, "forward", None, False)
    fields = list(sample.to_json())
    missing = [f for f in fields if f not in REPLAY_HELP]
    if missing:
        raise SystemExit(f"docs/make_reference.py: no description for replay fields: {', '.join(missing)}")
    assert {f.name for f in dataclasses.fields(ReplayDecision)} >= set(fields)
    lines = ["## Replay output", "",
             "`sipguard replay --format jsonl` prints one JSON object per INVITE transaction (a retransmission "
             "adds no line, other messages none), with these fields in this order:", "",
             "| field | meaning |", "|---|---|"]
    lines += [f"| `{f}` | {cell(REPLAY_HELP[f])} |" for f in fields]
    return [*lines, ""]


def metrics_section() -> list[str]:
    from sipguard.observe.metrics import PROCESS_SERIES, SPECS

    lines = ["## Metrics", "", "On `http.listen` at /metrics (Prometheus text format). Counters end in `_total`; "
             "histograms have `_bucket`, `_sum`, `_count`.", "",
             "| metric | type | labels | meaning |", "|---|---|---|---|"]
    for spec in SPECS:
        name = spec.name + "_total" if spec.kind == "counter" else spec.name
        lines.append(f"| `{name}` | {spec.kind} | {', '.join(spec.labels) or '-'} | {cell(spec.help)} |")
    lines.append(f"| {', '.join(f'`{p}`' for p in PROCESS_SERIES)} | | - | the standard process series, over "
                 "every worker |")
    return [*lines, ""]


def main() -> None:
    out = ["# sipguard reference", "",
           "Every command, config key, policy fact and operator, reason code, replay field and metric. "
           "Generated from the code by `python docs/make_reference.py > docs/reference.md`; a test keeps it "
           "so. The README explains how the parts fit together.", ""]
    for part in (command_section, config_section, policy_section, reasons_section, replay_section,
                 metrics_section):
        out += part()
    sys.stdout.write("\n".join(out).rstrip() + "\n")


if __name__ == "__main__":
    main()
