"""sipguard: an asyncio SIP edge proxy that verifies STIR/SHAKEN and stops illegal robocalls."""

__version__ = "0.1.0"
