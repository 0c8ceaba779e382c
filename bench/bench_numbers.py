"""Cost of number normalisation on the hot path: parse_tn vs phonenumbers.

A realistic mix: each INVITE parses 3 values (PAI or From, To, R-URI) in header form;
callers follow a skewed distribution (a few busy numbers, a long tail of one-offs), so
the bounded cache sees both hits and misses. Run: PYTHONPATH=. .venv/bin/python bench/bench_numbers.py
"""

from __future__ import annotations

import random
import time

import phonenumbers

from sipguard import numbers
from sipguard.numbers import parse_tn

CALLS = 100_000
rng = random.Random(4)


def number() -> str:
    npa = rng.choice(["202", "212", "305", "415", "416", "876", "787", "800", "312", "713"])
    return f"{npa}{rng.randint(200, 999)}{rng.randint(0, 9999):04d}"


busy = [number() for _ in range(2_000)]
forms = ['"Caller" <sip:+1{}@198.51.100.7;user=phone>;tag=8a7c', "<sip:{}@gw.example.net>;tag=x",
         "<tel:+1{}>", "sip:1{}@10.0.0.1:5060", "+1{}"]


def value() -> str:
    roll = rng.random()
    if roll < 0.05:
        return rng.choice(["<sip:anonymous@anonymous.invalid>;tag=1", '"+44 20 7183 8750" <sip:+442071838750@uk>',
                           "<sip:911@psap>"])
    digits = rng.choice(busy) if roll < 0.75 else number()  # 25 % never seen before
    return rng.choice(forms).format(digits)


def main() -> None:
    values = [value() for _ in range(CALLS * 3)]
    numbers._parse_cached.cache_clear()
    start = time.perf_counter()
    for v in values:
        parse_tn(v)
    ours = (time.perf_counter() - start) / len(values) * 1e6
    hits, misses, size = numbers.cache_info()
    cold_values = [f"+1{number()}" for _ in range(20000)]
    numbers._parse_cached.cache_clear()
    cold_start = time.perf_counter()
    for v in cold_values:
        parse_tn(v)
    cold = (time.perf_counter() - cold_start) / len(cold_values) * 1e6
    uri_values = [f"sip:1{number()}@127.0.0.1:5061;user=phone" for _ in range(20000)]  # bench_proxy's From
    numbers._parse_cached.cache_clear()
    start = time.perf_counter()
    for v in uri_values:
        parse_tn(v)
    uri_cold = (time.perf_counter() - start) / len(uri_values) * 1e6
    uncached = numbers._parse_cached.__wrapped__
    start = time.perf_counter()
    for v in uri_values:
        uncached(v)
    uri_parse = (time.perf_counter() - start) / len(uri_values) * 1e6
    start = time.perf_counter()
    for v in cold_values:
        n = phonenumbers.parse(v)
        phonenumbers.is_valid_number(n)
        phonenumbers.region_code_for_number(n)
    lib = (time.perf_counter() - start) / len(cold_values) * 1e6
    print(f"parse_tn, realistic mix ({len(values)} values, cache hit ratio {hits / (hits + misses):.0%}, "
          f"cache size {size}): {ours:.2f} us/value")
    print(f"parse_tn, every value new (cache misses only): {cold:.2f} us/value")
    print(f"parse_tn, every value new, sip:1NPANXXXXXX@host;user=phone: {uri_cold:.2f} us/value, "
          f"of which the parse (no cache): {uri_parse:.2f}")
    print(f"phonenumbers parse+is_valid+region, same values: {lib:.2f} us/value")


if __name__ == "__main__":
    main()
