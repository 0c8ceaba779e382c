"""No traceback record lost with several workers (issue 7): ``sipguard serve --workers 2`` on
a persistent redis-server, sipp calls through it, Redis killed with -9 mid-traffic and
restarted on the same port, sipguard stopped with SIGTERM. Every call sipp saw answered has
exactly one record in Redis -- the records a traceback answer (47 CFR 42.6) relies on.

Before the fix one worker could flush the other's spool files out of order and the Redis
append's per-writer high-water mark dropped the late ones (404 of 3,999 in the report).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import base_config
from outage_traffic import Outage, every_answered_call_has_one_record

from tests.redis_fixtures import REDIS_SERVER, start_redis

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(REDIS_SERVER is None, reason="redis-server is not installed")]


def test_two_workers_and_a_redis_kill_leave_every_answered_call_one_record(sipguard: Any,
                                                                           tmp_path: Path) -> None:
    redis = start_redis(("--appendonly", "yes", "--appendfsync", "always"))
    try:
        def config_of(uas_port: int) -> dict[str, Any]:
            return base_config(uas_port, store=redis.url, store_failure="fail-open",
                               traceback={"path": str(tmp_path / "tb.db"), "spool": str(tmp_path / "spool"),
                                          "batch": 50, "retention_days": 7})
        # 20 s of traffic; Redis killed with -9 after 6 s (the AOF keeps what it took), back after
        # 4 s on the same port and data folder
        every_answered_call_has_one_record(sipguard, tmp_path, config_of, Outage(
            calls=2000, rate=100, before=6.0, length=4.0, down=redis.stop, up=redis.start))
    finally:
        redis.stop()
