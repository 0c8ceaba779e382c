"""STIR/SHAKEN: verification (STI-VS) and signing (STI-AS). Pure except the x5u fetcher."""
