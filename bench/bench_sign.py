"""Signing cost: sipguard's Signer.sign vs the raw cryptography ES256 sign, and vs pyjwt.

Raw = ``key.sign(<typical signing input>, ECDSA(SHA256))`` alone: the floor. Signer =
the whole Identity header value (payload JSON, base64url, sign, DER -> r||s). pyjwt =
``jwt.encode`` of the same claims and header. Single thread, so the figures are per core.
Run: PYTHONPATH=. .venv/bin/python bench/bench_sign.py [seconds per case, default 3]
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # tests.sign_fixtures, when run as bench/bench_sign.py

import jwt  # noqa: E402
from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from sipguard.shaken.keys import load_signing_key  # noqa: E402
from sipguard.shaken.sign import Signer  # noqa: E402
from tests.sign_fixtures import make_credentials  # noqa: E402

NOW = time.time()


def rate(fn: Callable[[int], object], seconds: float) -> float:
    count, start = 0, time.perf_counter()
    while True:
        for i in range(100):
            fn(i)
        count += 100
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return count / elapsed


def best_rates(cases: dict[str, Callable[[int], object]], seconds: float, rounds: int = 10) -> dict[str, float]:
    """Interleave the cases in short slices and keep each one's best slice: the machine is
    shared, so a slow slice says more about the neighbours than about the code."""
    best = dict.fromkeys(cases, 0.0)
    for _ in range(rounds):
        for name, fn in cases.items():
            best[name] = max(best[name], rate(fn, seconds / rounds))
    return best


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    with tempfile.TemporaryDirectory() as tmp:
        creds = make_credentials(Path(tmp), NOW)
        signer = Signer.load(creds.config(), NOW)
        key = load_signing_key(str(creds.key_path))  # loaded the same way the Signer's key is
    origid = signer.origid_for("carrier-a")
    sample = signer.passport("12024561111", ["13035551234"], NOW, origid).rsplit(".", 1)[0].encode()
    algorithm = ec.ECDSA(hashes.SHA256())
    header = {"ppt": "shaken", "typ": "passport", "x5u": signer.cfg.x5u}

    def raw(i: int) -> object:
        return key.sign(sample, algorithm)

    def ours(i: int) -> object:
        return signer.sign(f"1202456{i:04d}", ["13035551234"], NOW, origid)

    def pyjwt(i: int) -> object:
        claims = {"attest": "C", "dest": {"tn": ["13035551234"]}, "iat": int(NOW),
                  "orig": {"tn": f"1202456{i:04d}"}, "origid": origid}
        return jwt.encode(claims, key, algorithm="ES256", headers=header)

    rates = best_rates({"raw": raw, "ours": ours, "pyjwt": pyjwt}, seconds)
    r_raw, r_ours, r_jwt = rates["raw"], rates["ours"], rates["pyjwt"]
    print(f"raw cryptography ES256 sign: {r_raw:8.0f} /s  ({1e6 / r_raw:.1f} us)")
    print(f"Signer.sign (Identity value): {r_ours:8.0f} /s  ({1e6 / r_ours:.1f} us)  "
          f"= {r_ours / r_raw:.0%} of raw")
    print(f"pyjwt.encode, same token:     {r_jwt:8.0f} /s  ({1e6 / r_jwt:.1f} us)  = {r_jwt / r_raw:.0%} of raw")


if __name__ == "__main__":
    main()
