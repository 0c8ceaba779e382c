"""Replay speed: INVITEs per second through capture reading + parse + the real pipeline.

Builds a capture of N INVITEs from a foreign trunk (half with a valid SHAKEN Identity
signed by a throw-away STI test PKI, half unsigned), replays it once to warm the
certificate cache, then times further replays (CPU time, alternating, best round). Also
times capture reading alone.

Two cases: "token cache off" (Verifier(token_cache_size=0): every signed INVITE decodes its
PASSporT and checks ES256, as distinct live calls do) and "token cache on" (the default: a
second pass over the same capture presents the same tokens again, as `--compare` or a
re-run does). `--baseline REV` replays with sipguard at git revision REV too, alternating.

    .venv/bin/python bench/bench_replay.py [N=1000] [--rounds 20] [--baseline REV [--only PATHS]]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.clock import ManualClock  # noqa: E402
from sipguard.replay.capture import read_sip  # noqa: E402
from sipguard.replay.pcapwrite import Message, write_capture  # noqa: E402
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


class Impl:
    """One sipguard (this tree, or `sipguard_base` from --baseline) and its pipelines."""

    def __init__(self, name: str, pkg: str) -> None:
        import importlib

        self.name = name
        mod = lambda m: importlib.import_module(pkg + m)  # noqa: E731
        self.load_config = mod(".config").load_config
        # a baseline from before PipelineSettings took the whole config
        self.settings = getattr(mod(".config"), "PipelineSettings", None)
        self.Pipeline = mod(".pipeline").Pipeline
        self.replay = mod(".replay.runner").replay
        self.Verifier = mod(".shaken.verify").Verifier
        self.open_store = mod(".store").open_store
        self.has_token_cache = "token_cache_size" in self.Verifier.__init__.__code__.co_varnames

    async def pipeline(self, cfg_path: Path, pki: StiPki, token_cache: bool) -> Any:
        cfg = self.load_config(str(cfg_path))
        store = self.open_store(cfg.store, cfg.limits, cfg.store_timeout)
        await store.start()
        kw = {} if token_cache or not self.has_token_cache else {"token_cache_size": 0}
        verifier = self.Verifier(pki.config(), MapFetcher({X5U: pki.chain_pem("good")}), **kw)
        settings = self.settings.of(cfg) if self.settings is not None else cfg
        return cfg, self.Pipeline(settings, ManualClock(START), verifier, store, None, None)

    async def run(self, cap: Path, cfg: Any, pipe: Any) -> tuple[float, dict[str, int]]:
        verstats: dict[str, int] = {}
        t0 = time.process_time()
        async for d in self.replay(cap, cfg, pipeline=pipe):
            verstats[d.verstat] = verstats.get(d.verstat, 0) + 1
        return time.process_time() - t0, verstats


async def run(n: int, rounds: int, baseline: str | None, only: list[str] | None = None) -> None:
    impls = [Impl("this tree", "sipguard")]
    if baseline:
        from bench_baseline_lib import NAME, load_baseline

        print(f"baseline: {baseline} = {load_baseline(baseline, only)[:10]}"
              + (f", only {', '.join(only)} (the rest as HEAD)" if only else ""))
        impls.append(Impl(f"baseline {baseline}" + (" (--only)" if only else ""), NAME))
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
        cfg_path = Path(tmp) / "cfg.yaml"
        cfg_path.write_text(CONFIG)

        read_best = 0.0
        # (label, impl, token cache) -> [cfg, pipeline, first pass CPU s, best warm pass CPU s, verstats]
        cases: list[list[Any]] = []
        for impl in impls:
            for token_cache in ((False, True) if impl.has_token_cache else (True,)):
                label = impl.name + (", token cache on" if token_cache and impl.has_token_cache else
                                     ", token cache off" if impl.has_token_cache else "")
                cfg, pipe = await impl.pipeline(cfg_path, pki, token_cache)
                first, _ = await impl.run(cap, cfg, pipe)   # cold: one x5u fetch, nothing cached
                cases.append([label, impl, cfg, pipe, first, float("inf"), {}])
        # CPU time, alternating the cases round by round (the 2 cores are shared), best round each
        for _ in range(rounds):
            t0 = time.process_time()
            read, _ = read_sip(cap)
            read_best = max(read_best, len(read) / (time.process_time() - t0))
            for case in cases:
                took, case[6] = await case[1].run(cap, case[2], case[3])
                case[5] = min(case[5], took)
        for case in cases:
            await case[3].aclose()
    print(f"capture: {n} INVITEs (half signed), {rounds} alternating rounds, CPU time, best round")
    print(f"read only: {read_best:10.0f} messages/s (this tree)")
    for label, _, _, _, first, best, verstats in cases:
        print(f"{label}:\n  first pass (cold) {n / first:8.0f} INVITEs/s"
              f"\n  warm certificate cache {n / best:8.0f} INVITEs/s  ({1e6 * best / n:.0f} us each)  {verstats}")


def main() -> None:
    parser = argparse.ArgumentParser()
    # many short rounds: alternating finely is what makes old/new comparable on a shared machine
    parser.add_argument("invites", nargs="?", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--baseline", help="git revision replayed too, alternating with this tree")
    parser.add_argument("--only", help="comma-separated paths: the baseline is HEAD with only these files at REV")
    args = parser.parse_args()
    asyncio.run(run(args.invites, args.rounds, args.baseline, args.only.split(",") if args.only else None))


if __name__ == "__main__":
    main()
