"""Redis-only behaviour: one round trip per call, shared limits, outages, atomic swaps."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import pytest
from redis.exceptions import ResponseError

from sipguard.store import open_store
from sipguard.store.base import LimitSpec, LookupKeys
from sipguard.store.datasets import parse_rmd, read_text
from tests import redis_fixtures
from tests.redis_fixtures import REDIS_SERVER, RedisProcess, start_redis

redis_server = redis_fixtures.redis_server     # fixtures, shared with other test modules
redis_cluster = redis_fixtures.redis_cluster

pytestmark = pytest.mark.integration
DATA = Path(__file__).resolve().parents[1] / "data" / "rmd"
NOW = 1_750_000_000.0


def call(caller: str = "+12025550123", rmd: str | None = "RMD0000001") -> LookupKeys:
    return LookupKeys("t1", None, rmd, "192.0.2.1", caller, "+13035550100", "938K")


def test_lookup_is_one_round_trip(redis_server: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """Count what the client sends: one packet per lookup, whatever the number of limiters."""
    from redis.asyncio.connection import AbstractConnection

    sent: list[bytes] = []
    original = AbstractConnection.send_packed_command

    async def counting(self, command, check_health=True):  # type: ignore[no-untyped-def]
        sent.append(b"".join(command) if isinstance(command, list) else bytes(command))
        return await original(self, command, check_health)

    limits = (LimitSpec("a", ("caller",), 1.0, 5), LimitSpec("b", ("trunk",), 1.0, 5),
              LimitSpec("c", ("source", "callee"), 1.0, 5))

    async def main() -> None:
        store = open_store(redis_server.url, limits, timeout=2.0, prefix="onert")
        await store.start()
        await store.lookup(call(), NOW)          # first call may load the script (NOSCRIPT)
        if store._threat_task is not None:       # ... and starts the threat lists' refresh, which
            await store._threat_task             # may make a connection (CLIENT SETINFO) meanwhile
        monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
        for _ in range(10):
            assert not (await store.lookup(call(), NOW)).degraded
        monkeypatch.setattr(AbstractConnection, "send_packed_command", original)
        await store.aclose()

    asyncio.run(main())
    assert len(sent) == 10
    assert all(b"EVALSHA" in packet.upper() for packet in sent)


def test_two_instances_share_one_limit(redis_server: RedisProcess) -> None:
    spec = (LimitSpec("per_caller", ("caller",), 1 / 60, 6),)

    async def main() -> list[tuple[str, ...]]:
        a = open_store(redis_server.url, spec, timeout=2.0, prefix="shared")
        b = open_store(redis_server.url, spec, timeout=2.0, prefix="shared")
        await a.start()
        await b.start()
        results = []
        for _ in range(5):
            results.append((await a.lookup(call(caller="+12025550777"), NOW)).limited)
            results.append((await b.lookup(call(caller="+12025550777"), NOW)).limited)
        await a.aclose()
        await b.aclose()
        return results

    results = asyncio.run(main())
    assert results[:6] == [()] * 6
    assert results[6:] == [("per_caller",)] * 4       # 10 calls, burst 6: exactly 4 refused, globally


def test_cluster_limits_and_datasets_together(redis_cluster) -> None:  # type: ignore[no-untyped-def]
    specs = (LimitSpec("a", ("caller",), 1 / 60, 2), LimitSpec("b", ("callee",), 1 / 60, 1))

    async def main() -> list[tuple[str, ...]]:
        store = open_store(redis_cluster.url, specs, timeout=2.0, prefix="cl")
        await store.start()
        await store.import_rmd(parse_rmd(read_text(str(DATA / "messy.csv")))[0], "2025-06-01")
        out = []
        for _ in range(3):
            got = await store.lookup(call(), NOW)
            assert got.trunk_rmd == "listed" and not got.degraded
            out.append(got.limited)
        await store.aclose()
        return out

    assert asyncio.run(main()) == [(), ("b",), ("a", "b")]


def test_outage_degrades_then_recovers() -> None:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = start_redis()

    async def main() -> None:
        store = open_store(server.url, (LimitSpec("a", ("caller",), 1000.0, 1000),), timeout=0.2,
                           prefix="outage")
        await store.start()
        await store.import_rmd(parse_rmd(read_text(str(DATA / "messy.csv")))[0], "2025-06-01")
        answers = []
        for _ in range(20):
            answers.append(await store.lookup(call(), NOW))
        assert all(not a.degraded and a.trunk_rmd == "listed" for a in answers)
        server.stop()
        during = [await store.lookup(call(), NOW) for _ in range(20)]
        assert all(a.degraded for a in during)           # every call got an answer: degraded
        # ... still knowing the provider's RMD listing Redis gave a moment ago; nothing per call
        assert all(a.trunk_rmd == "listed" and a.list is None and not a.caller_dno for a in during)
        other = await store.lookup(call(rmd="RMD0000002"), NOW)
        assert other.degraded and other.trunk_rmd is None  # a provider never asked before: unknown,
        assert other.signer_rmd == answers[0].signer_rmd   # its signer (938K) was asked before
        late = await store.lookup(call(), NOW + 86400 + 1)
        assert late.degraded and late.trunk_rmd is None and late.signer_rmd is None  # a day old: unused
        assert store.counters.rmd_remembered == 21
        assert store.healthy is False
        server.start()                                   # same port, empty (no persistence)
        restarted = time.monotonic()
        while True:
            got = await store.lookup(call(), NOW)
            if not got.degraded:
                break
            assert time.monotonic() - restarted < 10, "the store did not recover"
            await asyncio.sleep(0.02)
        assert got.trunk_rmd == "absent"                 # the restarted Redis is empty: a real answer
        assert store.healthy is True
        assert store.counters.degraded >= 20
        await store.aclose()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_start_without_redis_then_it_appears() -> None:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = start_redis()
    server.stop()

    async def main() -> None:
        store = open_store(server.url, (), timeout=0.1, prefix="late")
        await store.start()                     # does not raise: serves degraded, retries
        assert (await store.lookup(call(), NOW)).degraded
        server.start()
        deadline = time.monotonic() + 10
        while (await store.lookup(call(), NOW)).degraded:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await store.aclose()

    try:
        asyncio.run(main())
    finally:
        server.stop()


def test_import_during_traffic_is_atomic(redis_server: RedisProcess) -> None:
    records = parse_rmd(read_text(str(DATA / "messy.csv")))[0]
    # a large second snapshot so the swap takes many round trips while calls run
    from sipguard.store.base import RmdRecord
    big = records + [RmdRecord(f"RMD{n:07d}", (f"{n:010d}",), implementation="partial") for n in range(100, 30100)]

    async def main() -> set[tuple[str, str | None]]:
        store = open_store(redis_server.url, (), timeout=2.0, prefix="swap")
        await store.start()
        await store.import_rmd(records, "2025-06-01")
        seen: set[tuple[str, str | None]] = set()
        done = asyncio.Event()

        async def traffic() -> None:
            while not done.is_set():
                got = await store.lookup(call(), NOW)
                assert not got.degraded
                seen.add((got.trunk_rmd, got.rmd_snapshot))
                await asyncio.sleep(0)

        task = asyncio.create_task(traffic())
        await store.import_rmd(big, "2025-07-01")
        done.set()
        await task
        seen.add(((await store.lookup(call(), NOW)).trunk_rmd, (await store.lookup(call(), NOW)).rmd_snapshot))
        await store.aclose()
        return seen

    seen = asyncio.run(main())
    assert seen <= {("listed", "2025-06-01"), ("listed", "2025-07-01")}
    assert ("listed", "2025-07-01") in seen


def test_sentinel_url(redis_server: RedisProcess) -> None:
    from tests.redis_fixtures import start_sentinel

    sentinel = start_sentinel(redis_server)

    async def main() -> None:
        store = open_store(f"redis+sentinel://127.0.0.1:{sentinel.port}/mymaster/0",
                           (LimitSpec("a", ("caller",), 1 / 60, 1),), timeout=2.0, prefix="sentinel")
        await store.start()
        assert store.healthy
        await store.import_rmd(parse_rmd(read_text(str(DATA / "messy.csv")))[0], "2025-06-01")
        first, second = await store.lookup(call(), NOW), await store.lookup(call(), NOW)
        assert (first.trunk_rmd, first.limited, second.limited) == ("listed", (), ("a",))
        await store.aclose()

    try:
        asyncio.run(main())
    finally:
        sentinel.stop()


def _tls_files(workdir: Path) -> None:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    day = datetime.timedelta(days=1)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("test ca")).issuer_name(name("test ca"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - day).not_valid_after(now + day)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(2).not_valid_before(now - day).not_valid_after(now + day)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    (workdir / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (workdir / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (workdir / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()))


def test_tls_with_password(tmp_path: Path) -> None:
    """rediss:// with a password (user:password@) and the server's CA named in the URL."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    from tests.redis_fixtures import free_port

    _tls_files(tmp_path)
    port = free_port()
    server = RedisProcess(port, str(tmp_path), (
        "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(tmp_path / "cert.pem"),
        "--tls-key-file", str(tmp_path / "key.pem"), "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
        "--tls-auth-clients", "no", "--requirepass", "s3cret"))
    try:
        server.proc = subprocess.Popen(
            [str(REDIS_SERVER), "--bind", "127.0.0.1", "--save", "", "--dir", str(tmp_path), *server.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ca = tmp_path / "ca.pem"

        async def main() -> None:
            deadline = time.monotonic() + 10
            while True:
                store = open_store(f"rediss://default:s3cret@127.0.0.1:{port}/0?ssl_ca_certs={ca}", (),
                                   timeout=2.0, prefix="tls")
                await store.start()
                if store.healthy or time.monotonic() > deadline:
                    break
                await store.aclose()
                await asyncio.sleep(0.05)
            assert store.healthy
            await store.list_add("number", "block", "+12025550123", None)
            assert (await store.lookup(call(), NOW)).list == "block"
            await store.aclose()
            wrong = open_store(f"rediss://default:nope@127.0.0.1:{port}/0?ssl_ca_certs={ca}", (), timeout=0.5)
            await wrong.start()                         # a wrong password: not healthy, no exception
            assert not wrong.healthy and (await wrong.lookup(call(), NOW)).degraded
            await wrong.aclose()

        asyncio.run(main())
    finally:
        server.stop()


def test_import_lock_and_sweep_of_leftovers(redis_server: RedisProcess) -> None:
    import redis.asyncio as aioredis

    from sipguard.errors import SipguardError

    async def main() -> None:
        store = open_store(redis_server.url, (), timeout=2.0, prefix="lock")
        await store.start()
        client = aioredis.from_url(redis_server.url)
        # an import that crashed half way left a generation behind
        await client.hset("lock:{lock}:rmd:999:id", "RMD0000009", "listed|complete|RMD0000009|")
        await store.import_rmd(parse_rmd(read_text(str(DATA / "messy.csv")))[0], "2025-06-01")
        assert await client.exists("lock:{lock}:rmd:999:id") == 0
        # another import running: refused with a clear message, nothing changed
        await client.set("lock:{lock}:lock:rmd", "someone", px=60_000)
        with pytest.raises(SipguardError, match="another rmd import is running"):
            await store.import_rmd([], "2025-07-01")
        assert (await store.lookup(call(), NOW)).rmd_snapshot == "2025-06-01"
        await client.delete("lock:{lock}:lock:rmd")
        await store.import_dno(["2025550123"])
        await store.import_dno(["2025550124"])
        dno_keys = [k async for k in client.scan_iter(match="lock:{lock}:dno:*")]
        assert len(dno_keys) == 1                        # the old generation is gone
        await client.aclose()
        await store.aclose()

    asyncio.run(main())


def test_concurrent_lookups_get_their_own_answers(redis_server: RedisProcess) -> None:
    """Lookups of one loop turn share a write (batch.py): replies must still reach the right call,
    also when some callers give up half way."""
    records = parse_rmd(read_text(str(DATA / "messy.csv")))[0]
    ids = ["RMD0000001", "RMD0000002", "RMD0000003", "RMD0009999"]
    want = {"RMD0000001": "complete", "RMD0000002": "partial", "RMD0000003": "none", "RMD0009999": None}

    async def main() -> None:
        store = open_store(redis_server.url, (), timeout=2.0, prefix="mux")
        await store.start()
        await store.import_rmd(records, "2025-06-01")
        calls = [ids[n % 4] for n in range(400)]

        async def one(rmd: str) -> str | None:
            return (await store.lookup(call(rmd=rmd), NOW)).trunk_implementation

        got = await asyncio.gather(*(one(r) for r in calls))
        assert got == [want[r] for r in calls]
        # callers that stop waiting (cancelled mid-batch) do not shift anyone else's reply
        tasks = [asyncio.create_task(one(r)) for r in calls]
        await asyncio.sleep(0)
        for task in tasks[::3]:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for rmd, result in zip(calls, results, strict=True):
            assert isinstance(result, asyncio.CancelledError) or result == want[rmd]
        assert await asyncio.gather(*(one(r) for r in calls)) == [want[r] for r in calls]
        await store.aclose()

    asyncio.run(main())


def test_lookup_lua_contract(redis_server: RedisProcess) -> None:
    """lookup.lua on its own, as its header comment describes it (KEYS, ARGV, return tuple)."""
    import redis.asyncio as aioredis

    from sipguard.store.redis import LOOKUP_LUA

    async def main() -> None:
        client = aioredis.from_url(redis_server.url, decode_responses=True)
        script = client.register_script(LOOKUP_LUA)
        base = ["", "", "12025550123", "2025550123", "t1", "", "13035550100", str(NOW)]
        # datasets only, nothing loaded: 9 fields + empty limiter, campaign and replay strings
        # (ARGV ends with nc = 0 detector keys, np = 0 seen-set keys)
        reply = await script(keys=["c:{c}:meta", "c:{c}:lists", "c:{c}:ocn", "c:{c}:notices"],
                             args=[4, *base, 0, 0])
        assert reply == ["absent", "", "", "", "0", "", "", "", "", "", "", ""]
        # limits only (nd = 0, as in Cluster): burst 2, one flag per limiter key
        flags = [(await script(keys=["c:l:{a:1}", "c:l:{b:1}"], args=[0, *base, "60", 2, "60", 1, 0, 0]))[9]
                 for _ in range(3)]
        assert flags == ["00", "01", "11"]
        # ARGV that do not fit the KEYS (a caller out of step with the script): refused, nothing written
        for bad_keys, bad_args in ((["c:l:{z:1}"], [0, *base, "60", 2, 0]),              # the counts cut short
                                   (["c:l:{z:1}"], [0, *base, "60", 2, "x", 0, 0]),      # one ARGV too many
                                   (["c:l:{z:1}"], [0, *base, "60", 2, 1, 0]),           # nc beyond the KEYS
                                   (["c:l:{z:1}"], [0, *base, "60", 2, "c-1", 5000, 0, 1])):  # np: no limiter ARGV
            with pytest.raises(ResponseError, match="do not fit the contract"):
                await script(keys=bad_keys, args=bad_args)
        assert await client.exists("c:l:{z:1}") == 0
        ttl = await client.pttl("c:l:{a:1}")
        assert 0 < ttl <= 120_001                       # buckets expire when they would be full again
        await client.aclose()

    asyncio.run(main())


def test_datasets_in_config_are_not_reimported_into_redis(redis_server: RedisProcess, tmp_path: Path) -> None:
    from sipguard.store.datasets import load_datasets

    lists = tmp_path / "lists.txt"
    lists.write_text("allow prefix +1202\n")

    async def main() -> None:
        store = open_store(redis_server.url, (), timeout=2.0, prefix="noreload")
        await store.start()
        await store.list_add("number", "block", "+12025550123", "added with the CLI")
        assert await load_datasets(store, {"lists": str(lists)}) == {}     # each instance start: no-op
        assert (await store.lookup(call(), NOW)).list == "block"
        reports = await load_datasets(store, {"lists": str(lists)}, force=True)
        assert reports["lists"].imported == 1
        assert (await store.lookup(call(), NOW)).list == "allow"
        await store.aclose()

    asyncio.run(main())


def test_round_trips_reach_the_metrics() -> None:
    """sipguard_store_seconds{op} and sipguard_store_errors_total{op} from real round trips: three
    lookups, a certificate put and get, then a lookup on a connection Redis has dropped."""
    from prometheus_client.parser import text_string_to_metric_families

    from sipguard.observe.metrics import Metrics

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    server = start_redis()
    metrics = Metrics()

    async def main() -> None:
        store = open_store(server.url, timeout=2.0, prefix="metered", metrics=metrics)
        await store.start()
        for _ in range(3):
            assert not (await store.lookup(call(), NOW)).degraded
        url = "https://certs.example.net/metered.pem"
        await store.put_cert(url, b"PEM", time.time() + 60)
        assert await store.get_cert(url) is not None
        server.stop()
        assert (await store.lookup(call(), NOW)).degraded
        await store.aclose()

    try:
        asyncio.run(main())
    finally:
        server.stop()
    got = {(s.name, tuple(s.labels.items())): s.value
           for family in text_string_to_metric_families(metrics.render()[0].decode()) for s in family.samples}
    assert got[("sipguard_store_seconds_count", (("op", "lookup"),))] == 4
    assert got[("sipguard_store_seconds_count", (("op", "cert_put"),))] == 1
    assert got[("sipguard_store_seconds_count", (("op", "cert_get"),))] == 1
    assert got[("sipguard_store_errors_total", (("op", "lookup"),))] == 1
    assert got[("sipguard_store_errors_total", (("op", "cert_get"),))] == 0   # a known label: starts at 0



def test_a_worker_behind_is_not_a_redis_down(redis_server: RedisProcess) -> None:
    """Lookups that time out because this worker's loop is behind (every turn held ~6 ms by
    other work, Redis answering all along) are answered degraded but do not mark Redis down:
    no reconnect that drops every pooled connection and answers every call degraded until it
    is done."""
    async def main() -> None:
        store = open_store(redis_server.url, (), timeout=0.04, prefix="behind")
        await store.start()
        answers: list = []  # type: ignore[type-arg]
        stop = time.monotonic() + 1.5

        async def hog() -> None:
            while time.monotonic() < stop:
                time.sleep(0.006)              # a long turn: the worker's other callbacks
                await asyncio.sleep(0)

        async def caller(i: int) -> None:
            await asyncio.sleep(i * 0.002)         # calls arrive spread out, not in lockstep
            while time.monotonic() < stop:
                answers.append(await store.lookup(call(caller=f"+1202555{i:04d}"), NOW))
                await asyncio.sleep(0.001)

        await asyncio.gather(hog(), *(caller(i) for i in range(40)))
        counters = store.counters
        assert counters.timeouts > 0                         # the turns made lookups late
        assert counters.reconnects == 0 and store.healthy   # ... yet Redis was never marked down
        assert counters.degraded == counters.timeouts       # degraded only where it timed out
        assert not (await store.lookup(call(), NOW)).degraded
        await store.aclose()

    asyncio.run(main())


def test_a_hung_redis_is_marked_down(redis_server: RedisProcess) -> None:
    """Redis stopped (SIGSTOP: the connection stays open, nothing answers): three timeouts
    with no reply read meanwhile mark it down; calls then get their degraded answer without
    waiting for a timeout of their own."""
    import signal

    async def main() -> None:
        store = open_store(redis_server.url, (), timeout=0.05, prefix="hung")
        await store.start()
        assert not (await store.lookup(call(), NOW)).degraded
        assert redis_server.proc is not None
        redis_server.proc.send_signal(signal.SIGSTOP)
        try:
            for _ in range(3):
                assert (await store.lookup(call(), NOW)).degraded
            assert store.healthy is False and store.counters.timeouts == 3
            assert (await store.lookup(call(), NOW)).degraded
            assert store.counters.timeouts == 3                # answered at once: no timeout of its own
        finally:
            redis_server.proc.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + 10
        while (await store.lookup(call(), NOW)).degraded:
            assert time.monotonic() < deadline, "the store did not recover"
            await asyncio.sleep(0.02)
        await store.aclose()

    asyncio.run(main())


def test_waiting_is_the_oldest_lookup_in_flight_beyond_the_store_s_own_time() -> None:
    """``RedisStore.waiting`` (what the overload guard sheds by): 0 when nothing waits; while
    Redis is stopped, how far into the timeout the oldest lookup in flight is, less the
    quickest answer Redis gave lately; 0 again once every lookup has its answer. Its own
    redis-server: it is stopped with SIGSTOP."""
    import signal

    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    redis = start_redis()

    async def main() -> None:
        store = open_store(redis.url, (), timeout=5.0, prefix="waiting")
        await store.start()
        loop = asyncio.get_running_loop()
        for _ in range(3):
            assert not (await store.lookup(call(), NOW)).degraded
        assert store.waiting(loop.time()) == 0.0
        floor = min(store._floor)
        assert 0.0 <= floor < 5.0                  # Redis's own time, from the answers so far
        assert redis.proc is not None
        redis.proc.send_signal(signal.SIGSTOP)
        try:
            first = loop.create_task(store.lookup(call(), NOW))
            while not store._in_flight:
                await asyncio.sleep(0)
            started = store._in_flight[0][0]
            await asyncio.sleep(0.2)
            second = loop.create_task(store.lookup(call(caller="+12025550999"), NOW))
            await asyncio.sleep(0.05)
            now = loop.time()
            assert len(store._in_flight) == 2
            # the oldest lookup counts, less the floor, as a share of the 5 s timeout
            assert store.waiting(now) == pytest.approx((now - started - floor) / 5.0)
            assert store.waiting(now) > (now - store._in_flight[1][0]) / 5.0
        finally:
            redis.proc.send_signal(signal.SIGCONT)
        assert not (await first).degraded and not (await second).degraded
        assert store.waiting(loop.time()) == 0.0
        assert not store._in_flight                # none kept once answered
        await store.aclose()

    try:
        asyncio.run(main())
    finally:
        redis.stop()
