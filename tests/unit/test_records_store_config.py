"""``traceback.store`` (issue 19): where records go, and the Redis retention that is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from sipguard import yamlconf
from sipguard.config import load_config
from sipguard.errors import ConfigError
from sipguard.records.record import REDIS_MAX_DAYS, TracebackConfig

REDIS = "redis://127.0.0.1:6379/0"


def config_of(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sipguard.yaml"
    path.write_text(text)
    return path


def test_548_days_of_records_in_redis_is_refused_saying_why(tmp_path: Path) -> None:
    path = config_of(tmp_path, f"store: {REDIS}\ntraceback: {{retention_days: 548}}\n")
    with pytest.raises(ConfigError) as err:
        load_config(str(path))
    text = str(err.value)
    assert f"{path}:2: traceback.retention_days" in text
    assert "548 days of call records would be kept in Redis" in text and "RAM" in text
    assert "postgresql://" in text and "47 CFR 42.6" in text


def test_the_default_retention_with_a_redis_store_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="in Redis"):
        load_config(str(config_of(tmp_path, f"store: {REDIS}\n")))


def test_redis_as_a_short_record_store_and_the_archives_elsewhere(tmp_path: Path) -> None:
    short = load_config(str(config_of(tmp_path, f"store: {REDIS}\ntraceback: {{retention_days: {REDIS_MAX_DAYS}}}\n")))
    assert short.traceback.store_for(short.store) == REDIS
    pg = "postgresql://sipguard@db.example.net/sipguard"
    archived = load_config(str(config_of(tmp_path, f"store: {REDIS}\ntraceback: {{store: '{pg}'}}\n")))
    assert (archived.traceback.retention_days, archived.traceback.store_for(archived.store)) == (548, pg)
    local = load_config(str(config_of(tmp_path, f"store: {REDIS}\ntraceback: {{store: sqlite}}\n")))
    assert local.traceback.store_for(local.store) == "memory"
    memory = load_config(str(config_of(tmp_path, "store: memory\n")))
    assert memory.traceback.store_for(memory.store) == "memory"


@pytest.mark.parametrize("text, key, words", [
    ("store: mysql://x\n", "traceback.store", "expected sqlite, redis"),
    ("store: redis\n", "traceback.store", "top-level store is not Redis"),
])
def test_bad_traceback_store(tmp_path: Path, text: str, key: str, words: str) -> None:
    sec = yamlconf.section_of(yamlconf.parse(text), "c.yaml", "traceback")
    with pytest.raises(ConfigError) as err:
        TracebackConfig.from_section(sec, str(tmp_path))
    assert f"c.yaml:1: {key}" in str(err.value) and words in str(err.value)


def test_redis_named_explicitly_with_long_retention_is_refused_at_the_store_key(tmp_path: Path) -> None:
    sec = yamlconf.section_of(yamlconf.parse("store: redis\nretention_days: 30\n"), "c.yaml", "traceback")
    with pytest.raises(ConfigError, match="c.yaml:1: traceback.store: 30 days"):
        TracebackConfig.from_section(sec, str(tmp_path), REDIS)


def test_check_config_reports_the_redis_retention_beside_the_other_errors(tmp_path: Path) -> None:
    from sipguard.config_check import check_config

    path = config_of(tmp_path, f"store: {REDIS}\nmode: sideways\ntraceback: {{retention_days: 30}}\n")
    errors = [str(e) for e in check_config(str(path), 0.0)]
    assert any(":2: mode" in e for e in errors)
    assert any(":3: traceback.retention_days: 30 days of call records would be kept in Redis" in e for e in errors)
