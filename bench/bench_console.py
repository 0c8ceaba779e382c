"""What the operator console costs the process that serves it.

    .venv/bin/python bench/bench_console.py

- a what-if over 10,000 stored calls with the example policy against itself (every call
  decided twice; the console runs it in a thread, one at a time);
- one live-view snapshot (what /console/api/now and the 5-second sampler read) of a
  registry holding 20 trunks x 2 actions x 3 verstats x 4 attestations of INVITE series,
  30 rules and the usual gauges.
"""

from __future__ import annotations

import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
ROOT = Path(__file__).resolve().parents[1]

from sipguard.console import whatif  # noqa: E402
from sipguard.console.live import WANTED, Live  # noqa: E402
from sipguard.observe.metrics import Metrics, families  # noqa: E402
from sipguard.policy.loader import load_policy  # noqa: E402
from sipguard.policy.model import Redress  # noqa: E402
from tests.records_fixtures import make_record  # noqa: E402


def main() -> None:
    redress = Redress(url="https://example.net/redress")
    current = load_policy(str(ROOT / "config/policy.example.yaml"), redress)
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / "candidate.yaml"
        copy.write_text((ROOT / "config/policy.example.yaml").read_text())
        candidate = load_policy(str(copy), redress)
    records = [make_record(i, caller_raw=f"sip:+1202555{i:04d}@x", caller=f"1202555{i:04d}")
               for i in range(10_000)]
    best = min(timeit.repeat(lambda: whatif.changes(records, current, candidate), number=1, repeat=3))
    print(f"what-if over 10,000 calls: {best:.3f} s ({best / 10_000 * 1e6:.0f} us per call)")

    metrics = Metrics()
    for t in range(20):
        for action, status in (("forward", None), ("reject", 603)):
            for verstat in ("TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation"):
                for attest in ("A", "B", "C", None):
                    metrics.observe_decision(make_record(0, trunk=f"carrier-{t}", action=action, status=status,
                                                         verstat=verstat, attest=attest,
                                                         rule=f"rule-{t % 30}" if status else None), 0.001)
    live = Live()
    n = 200
    seconds = timeit.timeit(lambda: live.now(families(metrics.registry, WANTED), workers=1), number=n) / n
    print(f"live snapshot (480 INVITE series): {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
