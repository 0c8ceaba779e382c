"""The YAML policy: facts in, decision out. Pure: no I/O, no parsing at evaluation time.

    holder = PolicyHolder("config/policy.yaml", Redress.from_section(blocking.section("redress")))
    decision = holder.current.evaluate(facts)      # read .current once per call
    holder.maybe_reload()                          # every ~0.5 s and on SIGHUP
"""

from sipguard.policy.engine import Policy, PolicyHolder
from sipguard.policy.loader import check_policy, load_policy
from sipguard.policy.model import Redress

__all__ = ["Policy", "PolicyHolder", "Redress", "check_policy", "load_policy"]
