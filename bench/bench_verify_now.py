"""Benchmark: what ``Verifier.verify_now`` costs per call apart from the ES256 check itself.

    PYTHONPATH=. .venv/bin/python bench/bench_verify_now.py [--tokens 6000] [--rounds 7]

What a verifying worker pays per signed INVITE (the Identity of every call distinct, the x5u
certificate cached, the verified-token cache on as in a worker, so every call misses it and
stores its token): ``verify_now`` on each token once per round, then ``verify_es256`` alone on
the same tokens (signing input and signature decoded beforehand). The difference is the Python
around the signature: Identity parsing, base64url/JSON decoding, the header, claim, iat,
certificate and number checks, the caches and the result. As that difference is of two noisy
figures, the same Python is also timed directly ("stubbed"): ``verify_now`` with the cached
credential's key replaced by one whose ``verify`` accepts at once (everything else as in a
worker, the r||s -> DER conversion included). Then the parts on their own: ``parse_identity``,
``passport.decode``, ``shaken_claims``.

The collector is set as a worker sets it (``proxy.gcpacing.tune_gc``). CPU time
(``time.process_time``); every round's figure is printed, then the median (the 2 cores are
shared: compare medians of alternated runs, base tree then this tree).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sipguard.proxy.gcpacing import tune_gc  # noqa: E402
from sipguard.shaken import passport as pp  # noqa: E402
from sipguard.shaken.identity import parse_identity  # noqa: E402
from sipguard.shaken.verify import Verifier  # noqa: E402
from tests.shaken_pki import MapFetcher, StiPki, shaken_identity  # noqa: E402

URL = "https://certs.example.net/good.pem"
ORIG, DEST = ("12025550100",), ("13035550100",)


class AcceptingKey:
    """A public key whose ES256 check passes at once: the stubbed figure times the rest."""

    def verify(self, signature: bytes, data: bytes, algorithm: Any) -> None:
        return None


def timed(body: Any, n: int) -> float:
    start = time.process_time()
    body()
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    now = time.time()
    pki = StiPki(Path(tempfile.mkdtemp(prefix="bench-pki-")), now=now)
    key = pki.key("good")
    idents = [shaken_identity(key, URL, orig=ORIG[0], dest=[DEST[0]], iat=int(now), attest="ABC"[i % 3])
              for i in range(args.tokens)]
    tokens = [value.split(";")[0] for value in idents]
    decoded = [pp.decode(t) for t in tokens]
    signed = [(p.signing_input, p.signature) for p in decoded if p is not None]
    pub = key.public_key()
    fetcher = MapFetcher({URL: pki.chain_pem("good")})
    warm = shaken_identity(key, URL, orig=ORIG[0], dest=[DEST[0]], iat=int(now))
    n = len(idents)
    tune_gc()
    figures: dict[str, list[float]] = {name: [] for name in
                                       ("verify_now", "verify_es256", "around", "stubbed", "parse_identity", "decode",
                                        "shaken_claims")}
    import asyncio

    for _ in range(args.rounds):
        v = Verifier(pki.config(), fetcher)
        assert asyncio.run(v.verify([warm], ORIG, DEST, now)).passed  # the certificate cached

        def run_verify(v: Verifier = v) -> None:
            for value in idents:
                v.verify_now((value,), ORIG, DEST, now)

        def run_es256() -> None:
            for signing_input, signature in signed:
                pp.verify_es256(pub, signing_input, signature)

        def run_parse() -> None:
            for value in idents:
                parse_identity(value)

        def run_decode() -> None:
            for token in tokens:
                pp.decode(token)

        def run_claims() -> None:
            for p in decoded:
                pp.shaken_claims(p)  # type: ignore[arg-type]

        full = timed(run_verify, n)
        es = timed(run_es256, n)
        assert v.counters.passed == n + 1, v.counters
        figures["verify_now"].append(full)
        figures["verify_es256"].append(es)
        figures["around"].append(full - es)
        stub = Verifier(pki.config(), fetcher)
        assert asyncio.run(stub.verify([warm], ORIG, DEST, now)).passed
        entry = stub.creds.certs.peek(URL)
        assert entry is not None and entry.cred is not None
        entry.cred = dataclasses.replace(entry.cred, key=AcceptingKey())

        def run_stubbed(v: Verifier = stub) -> None:
            for value in idents:
                v.verify_now((value,), ORIG, DEST, now)

        figures["stubbed"].append(timed(run_stubbed, n))
        assert stub.counters.passed == n + 1, stub.counters
        figures["parse_identity"].append(timed(run_parse, n))
        figures["decode"].append(timed(run_decode, n))
        figures["shaken_claims"].append(timed(run_claims, n))
    print(f"python {sys.version.split()[0]}, {n} distinct tokens, {args.rounds} rounds, CPU us/call")
    for name, values in figures.items():
        print(f"{name:15s} median {statistics.median(values):7.2f} min {min(values):7.2f}  rounds " + " ".join(f"{x:.2f}" for x in values))


if __name__ == "__main__":
    main()
