"""Replay speed: INVITEs per second through capture reading + parse + the real pipeline.

Builds a capture of N INVITEs from a foreign trunk (half with a valid SHAKEN Identity
signed by a throw-away STI test PKI, half unsigned), replays it once to warm the
certificate cache, then times a second replay. Also times capture reading alone.

    .venv/bin/python bench/bench_replay.py [N]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.clock import ManualClock  # noqa: E402
from sipguard.config import load_config  # noqa: E402
from sipguard.pipeline import Pipeline  # noqa: E402
from sipguard.replay.capture import read_sip  # noqa: E402
from sipguard.replay.pcapwrite import Message, write_capture  # noqa: E402
from sipguard.replay.runner import replay  # noqa: E402
from sipguard.shaken.verify import Verifier  # noqa: E402
from sipguard.store import open_store  # noqa: E402
from tests.shaken_pki import MapFetcher, StiPki, shaken_identity  # noqa: E402

X5U = "https://cr.example.net/good.pem"
START = 1_750_000_000.0
CONFIG = """\
listen: ["udp://127.0.0.1:5060"]
next_hop: "sip:127.0.0.1:5070"
unknown_source: reject
trunks:
  - id: carrier-a
    role: foreign
    sources: ["198.51.100.0/24"]
    provider: {name: "Carrier A", frn: "0012345678", rmd: "RMD0001234", country: "GB"}
store: memory
"""


def invite(i: int, identity: str | None) -> str:
    caller, callee = f"+1202555{i % 10000:04d}", "+12025550100"
    ident = f"Identity: {identity}\n" if identity else ""
    return (f"INVITE sip:{callee}@gw.example.net SIP/2.0\n"
            f"Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK-{i}\n"
            f"Max-Forwards: 70\nFrom: <sip:{caller}@carrier-a.example>;tag=f{i}\n"
            f"To: <sip:{callee}@gw.example.net>\nCall-ID: bench-{i}@carrier-a\nCSeq: 1 INVITE\n"
            f"Contact: <sip:{caller}@198.51.100.7:5060>\n{ident}Content-Length: 0\n\n")


async def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pki = StiPki(Path(tmp) / "pki", now=START)
        key = pki.key("good")
        msgs = []
        for i in range(n):
            t = START + i * 0.001
            ident = (shaken_identity(key, X5U, orig=f"1202555{i % 10000:04d}", dest=["12025550100"],
                                     iat=int(t)) if i % 2 == 0 else None)
            msgs.append(Message(invite(i, ident), ("198.51.100.7", 5060), ("192.0.2.1", 5060), t))
        cap = write_capture(Path(tmp) / "bench.pcap", msgs)
        (Path(tmp) / "cfg.yaml").write_text(CONFIG)
        cfg = load_config(str(Path(tmp) / "cfg.yaml"))

        t0 = time.perf_counter()
        read, _ = read_sip(cap)
        t_read = time.perf_counter() - t0

        clock = ManualClock(START)
        store = open_store(cfg.store, cfg.limits, cfg.store_timeout)
        await store.start()
        pipe = Pipeline(cfg, clock, Verifier(pki.config(), MapFetcher({X5U: pki.chain_pem("good")})),
                        store, None, None)
        rounds = []
        verstats: dict[str, int] = {}
        for _ in range(2):   # the first round warms the certificate cache
            t0 = time.perf_counter()
            verstats = {}
            async for d in replay(cap, cfg, pipeline=pipe):
                verstats[d.verstat] = verstats.get(d.verstat, 0) + 1
            rounds.append(time.perf_counter() - t0)
        await pipe.aclose()
    print(f"capture: {n} INVITEs, {cap.name}")
    print(f"read only      : {len(read) / t_read:10.0f} messages/s")
    print(f"replay (cold)  : {n / rounds[0]:10.0f} INVITEs/s")
    print(f"replay (warm)  : {n / rounds[1]:10.0f} INVITEs/s   verstat {verstats}")


if __name__ == "__main__":
    asyncio.run(run(int(sys.argv[1]) if len(sys.argv) > 1 else 4000))
