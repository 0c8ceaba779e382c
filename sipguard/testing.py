"""sipguard's pytest plugin (entry point ``pytest11: sipguard``).

Operators replay captures through their own config in their own test suites, and
build captures from SIP message texts with the pcapwrite helpers re-exported here.
pytest imports this module at start-up whenever sipguard is installed, so it must
import cleanly and cheaply at all times: nothing heavy happens until a fixture is used.
"""

from __future__ import annotations
