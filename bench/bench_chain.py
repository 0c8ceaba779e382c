"""Cost of judging one x5u body: build_credential (parse, chain building and path checks,
TNAuthList) on a leaf + intermediate chain to one anchor (tests.shaken_pki's "good").

It runs once per downloaded certificate, not per call (the verdict is cached), but a flood of
new x5u URLs pays it each time. Compare trees by pointing PYTHONPATH at each:
    PYTHONPATH=. .venv/bin/python bench/bench_chain.py
"""

from __future__ import annotations

import tempfile
import time
import timeit

from sipguard.shaken.certs import (
    Credential,
    build_credential,
    chain_to,
    load_trust_anchors,
    parse_certificates,
)
from tests.shaken_pki import StiPki

NUMBER = 500


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        pki = StiPki(tmp, now=time.time())
        store = load_trust_anchors(pki.anchors)
        body = pki.chain_pem("good")
        assert isinstance(build_credential(body, store), Credential)
        best = min(timeit.repeat(lambda: build_credential(body, store), number=NUMBER, repeat=15)) / NUMBER
        print(f"build_credential, leaf + intermediate -> anchor: {best * 1e6:.1f} us (best of 15 x {NUMBER})")
        leaf, *pool = parse_certificates(body)
        assert chain_to(leaf, pool, store)
        best = min(timeit.repeat(lambda: chain_to(leaf, pool, store), number=NUMBER, repeat=15)) / NUMBER
        print(f"  of which chain building and path checks: {best * 1e6:.1f} us")


if __name__ == "__main__":
    main()
