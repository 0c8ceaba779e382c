"""No traceback record lost with PostgreSQL and several workers (issue 19, the guarantee of
issue 7): ``sipguard serve --workers 2`` with ``traceback.store: postgresql://...`` on a private
cluster, sipp calls through it, the cluster crashed (``pg_ctl -m immediate``) mid-traffic and
started again, sipguard stopped with SIGTERM. Every call sipp saw answered has exactly one
record, read back with ``sipguard traceback`` from PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import base_config
from outage_traffic import Outage, every_answered_call_has_one_record

from tests import pg_fixtures
from tests.pg_fixtures import PgCluster

pytestmark = pytest.mark.integration
pg_cluster = pg_fixtures.pg_cluster      # the fixture: a cluster this test may crash


def test_two_workers_and_a_postgresql_crash_leave_every_answered_call_one_record(
        sipguard: Any, pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = pg_fixtures.create_database(pg_cluster.admin_url)

    def config_of(uas_port: int) -> dict[str, Any]:
        return base_config(uas_port, traceback={"store": url, "path": str(tmp_path / "tb.db"),
                                                "spool": str(tmp_path / "spool"), "batch": 50})
    # 15 s of traffic; the cluster crashed (pg_ctl -m immediate) after 5 s: what it committed
    # survives; started again after 4 s
    every_answered_call_has_one_record(sipguard, tmp_path, config_of, Outage(
        calls=1500, rate=100, before=5.0, length=4.0, down=pg_cluster.stop, up=pg_cluster.start))
