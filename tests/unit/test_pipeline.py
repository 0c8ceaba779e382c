"""Pipeline.decide on real parts (memory store, verifier, policy, signer), no sockets."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from sipguard.clock import ManualClock
from sipguard.config import load_config
from sipguard.pipeline import Pipeline
from sipguard.sip import parse
from sipguard.store.base import DEGRADED, Lookups

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


def invite(caller: str = "+12127363100", callee: str = "+13036231000", extra: str = "",
           via2: str = "") -> bytes:
    text = (f"INVITE sip:{callee}@10.0.0.1;user=phone SIP/2.0\r\n"
            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKa1\r\n" + via2 +
            f"From: <sip:{caller}@192.0.2.10;user=phone>;tag=1\r\n"
            f"To: <sip:{callee}@10.0.0.1;user=phone>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
            f"Max-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n")
    return text.encode()


def make_config(tmp_path: Path, **extra: Any) -> Any:
    shutil.copytree(ROOT / "config/demo", tmp_path / "demo", dirs_exist_ok=True)
    shutil.copy(ROOT / "config/policy.example.yaml", tmp_path / "policy.yaml")
    data = yaml.safe_load((ROOT / "config/sipguard.example.yaml").read_text())
    data["policy"] = "policy.yaml"
    data["traceback"] = {"path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool")}
    data["trunks"][0]["sources"] = ["192.0.2.0/24"]
    data.update(extra)
    path = tmp_path / "sipguard.yaml"
    path.write_text(yaml.safe_dump(data))
    return load_config(str(path))


def decide(tmp_path: Path, data: bytes, source: tuple[str, int] = ("192.0.2.10", 5060),
           degraded: bool | Lookups = False, **config: Any) -> Any:
    """``degraded``: True for a store that answers nothing, or the degraded answer to give."""
    async def run() -> Any:
        pipeline = await Pipeline.create(make_config(tmp_path, **config), ManualClock(NOW))
        if degraded:
            answer = degraded if isinstance(degraded, Lookups) else DEGRADED

            async def down(keys: Any, now: float) -> Lookups:
                return answer
            pipeline.store.lookup = down  # type: ignore[method-assign]
        try:
            return await pipeline.decide(parse(data), source, "udp")
        finally:
            await pipeline.aclose()
    return asyncio.run(run())


def test_unsigned_us_caller_from_foreign_trunk_is_signed(tmp_path: Path) -> None:
    out = decide(tmp_path, invite())
    assert out.decision.action == "forward" and out.decision.rule == "sign-unsigned"
    assert out.signed and out.identity_added.endswith(
        ";info=<https://certs.example.net/sipguard/signing.pem>;alg=ES256;ppt=shaken")
    assert out.trunk.id == "carrier-a" and out.facts.caller == "12127363100"


def test_foreign_caller_is_not_signed(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+442071838750"))
    assert out.decision.action == "forward" and not out.signed


def test_dno_caller_rejected_603_cause_21(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+18002223333"))
    assert out.decision.status == 603 and out.decision.rule == "do-not-originate"
    assert any(name == "Reason" and "cause=21" in value for name, value in out.decision.headers)


def test_emergency_is_never_rejected(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+18002223333", callee="911"))
    assert out.decision.action == "forward"
    assert out.decision.would is not None and out.decision.would.action == "reject"


def test_unknown_source_is_403_but_not_for_911(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(), source=("203.0.113.9", 5060))
    assert out.decision.status == 403 and out.trunk is None
    out = decide(tmp_path, invite(callee="911"), source=("203.0.113.9", 5060))
    assert out.decision.action == "forward"


def test_trusted_proxy_source_header_and_via(tmp_path: Path) -> None:
    proxied = invite(extra="X-Sipguard-Source: 192.0.2.77:5060\r\n")
    out = decide(tmp_path, proxied, source=("127.0.0.5", 5060), trusted_proxies=["127.0.0.0/8"])
    assert out.trunk.id == "carrier-a" and out.source == ("192.0.2.77", 5060)
    # without the header: the Via below the proxy's own names the upstream
    via = invite(via2="Via: SIP/2.0/UDP 192.0.2.88:5062;branch=z9hG4bKup;received=192.0.2.89\r\n")
    out = decide(tmp_path, via, source=("127.0.0.5", 5060), trusted_proxies=["127.0.0.0/8"])
    assert out.source == ("192.0.2.89", 5062)
    # an untrusted sender cannot claim another source
    out = decide(tmp_path, proxied, source=("203.0.113.9", 5060), trusted_proxies=["127.0.0.0/8"])
    assert out.decision.status == 403


@pytest.mark.parametrize("mode,status", [("fail-closed", 503), ("fail-open", None)])
def test_store_failure_modes(tmp_path: Path, mode: str, status: int | None) -> None:
    out = decide(tmp_path, invite(), degraded=True, store_failure=mode)
    assert out.facts.store_degraded
    assert out.decision.status == status
    if status == 503:
        assert ("Retry-After", "5") in out.decision.headers


def test_store_down_leaves_rmd_facts_unknown_unless_remembered(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(), degraded=True)
    assert out.facts.trunk_rmd is None and out.facts.signer_rmd is None and out.facts.store_degraded
    remembered = Lookups(trunk_rmd="removed", trunk_implementation="none", degraded=True)
    out = decide(tmp_path, invite(), degraded=remembered)
    assert out.facts.trunk_rmd == "removed" and out.facts.trunk_implementation == "none"
    assert out.facts.store_degraded and not out.facts.caller_dno


def test_record_carries_the_provider_and_decision(tmp_path: Path) -> None:
    out = decide(tmp_path, invite(caller="+18002223333"))
    record = out.record(603, None, "test")
    assert (record.provider_frn, record.provider_rmd, record.trunk_role) == ("0012345678", "RMD0001234", "foreign")
    assert record.caller == "18002223333" and record.action == "reject" and record.rule == "do-not-originate"
    assert record.rmd_snapshot is not None
