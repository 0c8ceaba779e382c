"""records/postgres.py without a server: day partitions, what retention keeps, URL redaction."""

from __future__ import annotations

import datetime

import pytest

from sipguard.records import postgres

DAY = 86400.0
T0 = datetime.datetime(2026, 12, 6, 0, 0, tzinfo=datetime.UTC).timestamp()


@pytest.mark.parametrize("t, day", [
    (T0, datetime.date(2026, 12, 6)),
    (T0 - 0.000001, datetime.date(2026, 12, 5)),       # the last microsecond of the day before
    (T0 + DAY - 1, datetime.date(2026, 12, 6)),
])
def test_a_record_falls_in_its_utc_day(t: float, day: datetime.date) -> None:
    assert postgres.day_of(t) == day
    assert postgres.day_start(day) <= t < postgres.day_start(day) + DAY


def test_partition_names_round_trip_and_nothing_else_matches() -> None:
    name = postgres.partition_name(datetime.date(2026, 3, 9))
    assert name == "sipguard_records_p20260309"
    assert postgres.PARTITION.match(name)
    for other in ("sipguard_records", "sipguard_records_p2026039", "sipguard_records_p20260309_old",
                  "x_sipguard_records_p20260309"):
        assert not postgres.PARTITION.match(other)


@pytest.mark.parametrize("now, days, oldest_kept", [
    (T0 + 10, 548, datetime.date(2025, 6, 6)),          # 548 days back from just after midnight
    (T0 + DAY - 1, 1, datetime.date(2026, 12, 5)),      # yesterday stays until all of it is a day old
    (T0 + DAY, 1, datetime.date(2026, 12, 6)),
])
def test_retention_keeps_every_day_not_wholly_older_than_retention(now: float, days: int,
                                                                   oldest_kept: datetime.date) -> None:
    assert postgres.keep_from(now, days) == oldest_kept
    # every record younger than retention is in a day that is kept
    assert postgres.day_of(now - days * DAY + 1) >= oldest_kept


@pytest.mark.parametrize("url, shown", [
    ("postgresql://sg:s3cret@db.example.net:5432/records", "postgresql://sg:***@db.example.net:5432/records"),
    ("postgres://sg@db/records", "postgres://sg@db/records"),
    ("postgresql://db/records?sslmode=require", "postgresql://db/records?sslmode=require"),
])
def test_passwords_never_shown(url: str, shown: str) -> None:
    assert postgres.redact(url) == shown


def test_migrations_are_numbered_in_order_from_one() -> None:
    versions = [m[0] for m in postgres.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1)) and postgres.LATEST == versions[-1]
