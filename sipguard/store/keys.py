"""The Redis key schema, in one place (and the few normalisations both backends share).

Dataset keys share one hash tag, ``{<prefix>}``, so that in Redis Cluster the lookup script
can read the RMD, DNO, lists, OCN map and notices of a call in one slot. Each limiter bucket
has its own tag, ``{<name>:<value>}``, so limits spread over the cluster's nodes:

    sg:{sg}:meta                 hash: rmd_gen, rmd_snapshot, dno_gen, gen (counter)
    sg:{sg}:rmd:<gen>:id         hash: RMD number -> "status|implementation|rmd|frn"
    sg:{sg}:rmd:<gen>:frn        hash: FRN        -> same value
    sg:{sg}:dno:<gen>            set: 10-digit numbers, 7/6/3-digit NANP prefixes
    sg:{sg}:ocn                  hash: SPC -> "rmd|frn"
    sg:{sg}:lists                hash: "<kind>:<value>" -> "allow|block" TAB note
    sg:{sg}:notices              hash: ref -> JSON of the Notice
    sg:{sg}:threats              hash: source (c-cist|operator) -> JSON of its entries (threats.py);
                                 meta field threat_gen counts imports (workers reload on change)
    sg:l:{<limiter>:<value>}     string: GCRA theoretical arrival time (server seconds)
    sg:c:{f:<caller digits>}     set: callees of a caller in its fanout window (expires with it)
    sg:c:{b:<caller prefix>}     string: calls from a prefix in its burst window (expires with it)
    sg:x5u:<sha256(url)>         string: "<expires_at>\\n" + PEM, expiring at expires_at
    sg:pp:{<key>}                string: the Call-ID hash of the first call that carried a verified
                                 PASSporT signature (key: verify.signature_key), expiring with it

The Lua script derives the generation keys from ``KEYS[1]`` (the meta key) by the same rule
as ``KeySchema``, so the two must change together.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KeySchema:
    prefix: str = "sg"

    @property
    def base(self) -> str:
        return f"{self.prefix}:{{{self.prefix}}}:"

    @property
    def meta(self) -> str:
        return self.base + "meta"

    def rmd_id(self, gen: str) -> str:
        return f"{self.base}rmd:{gen}:id"

    def rmd_frn(self, gen: str) -> str:
        return f"{self.base}rmd:{gen}:frn"

    @property
    def rmd_changes(self) -> str:
        # not under "rmd:": an import sweeps every rmd:* key but the generation in force
        return self.base + "rmdlog"

    def dno(self, gen: str) -> str:
        return f"{self.base}dno:{gen}"

    @property
    def ocn(self) -> str:
        return self.base + "ocn"

    @property
    def lists(self) -> str:
        return self.base + "lists"

    @property
    def notices(self) -> str:
        return self.base + "notices"

    @property
    def threats(self) -> str:
        return self.base + "threats"

    def limit(self, name: str, value: str) -> str:
        return f"{self.prefix}:l:{{{name}:{value}}}"

    def campaign(self, kind: str, value: str) -> str:
        """A campaign-detector window (detectors.py): kind ``f`` fanout, ``b`` burst."""
        return f"{self.prefix}:c:{{{kind}:{value}}}"

    def cert(self, url: str) -> str:
        return f"{self.prefix}:x5u:" + hashlib.sha256(url.encode()).hexdigest()

    def passport(self, key: str) -> str:
        """The seen-set entry of a PASSporT signature (store/replay.py); its own slot."""
        return f"{self.prefix}:pp:{{{key}}}"

    def dataset_keys(self) -> list[str]:
        """KEYS[1..4] of lookup.lua, in order."""
        return [self.meta, self.lists, self.ocn, self.notices]


def digits(tn: str | None) -> str | None:
    """E.164 digits without the ``+``; None for nothing."""
    if not tn:
        return None
    return tn[1:] if tn.startswith("+") else tn


def nanp10(tn: str | None) -> str | None:
    """The 10 national digits of a NANP number given as E.164 (1NXXNXXXXXX), else None."""
    d = digits(tn)
    if d is None:
        return None
    if len(d) == 11 and d.startswith("1") and d.isdigit():
        return d[1:]
    if len(d) == 10 and d.isdigit():
        return d
    return None


def frn10(frn: str | None) -> str | None:
    """FRNs are 10 digits with leading zeros; exports often drop them or add punctuation."""
    if not frn:
        return None
    if frn.isascii() and frn.isdigit():
        return frn.zfill(10) if len(frn) <= 10 else None
    only = "".join(ch for ch in frn if ch.isdigit())
    if not only or len(only) > 10:
        return None
    return only.zfill(10)


def record_value(status: str, implementation: str, rmd: str | None, frn: str | None) -> str:
    return f"{status}|{implementation}|{rmd or ''}|{frn or ''}"


def split_record(value: str) -> tuple[str, str, str, str]:
    status, impl, rmd, frn = (value.split("|") + ["", "", "", ""])[:4]
    return status, impl, rmd, frn
