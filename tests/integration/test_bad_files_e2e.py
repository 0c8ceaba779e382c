"""A running sipguard keeps answering calls while its policy file turns hostile (the issue: a
50,000-deep `not:` made the policy watcher raise RecursionError and the worker exit): each
file is refused in the log with file:line, the process stays up and the running policy decides."""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e_helpers import wait_for
from tests.integration.test_e2e_gateway import DNO_CALLER, RULES, fresh  # noqa: F401 - fresh is a fixture
from tests.policy_fixtures import laughs, nested_not

pytestmark = pytest.mark.integration


def test_hostile_policy_files_never_stop_calls(fresh: Any) -> None:  # noqa: F811
    gw = fresh(RULES)
    assert gw.call(DNO_CALLER)[0].status == 603
    hostile = [nested_not(50_000), laughs(8), "version: 1\nrules: &r\n  - *r\n", "version: 2026-13-45\n",
               "[" * 50_000]
    for count, text in enumerate(hostile, 1):
        gw.policy.write_text(text)
        assert wait_for(lambda n=count: gw.log().count("policy not reloaded") >= n, timeout=10), gw.log()[-2000:]
        assert gw.sg.proc is not None and gw.sg.proc.poll() is None           # still running
        final = gw.call(DNO_CALLER)[0]
        assert final is not None and final.status == 603                      # the running policy decides
    log = gw.log()
    assert f"{gw.policy}:5: nested more than 64 levels deep" in log
    assert f"{gw.policy}:7: aliases (*name) stand for more than 100000 values" in log

