"""sipguard: an asyncio SIP edge proxy that verifies STIR/SHAKEN and stops illegal robocalls."""

from sipguard.native import check as _check

__version__ = "0.1.0"

_check()  # a compiled hot-path module not built from the source beside it must not run (sipguard.native)
