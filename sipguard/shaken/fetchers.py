"""Choosing the CertFetcher: HTTP(S) for ``serve``, a file map for offline replay.

``--x5u-map FILE`` (replay) maps x5u/CRL URLs to PEM files so a capture verifies without
the network; a URL missing from the map falls back to the guarded HTTP fetcher only when
one is given, else it fails like a 404 (x5u-fetch-failed): a fact about that URL, so the
other URLs of its host in the map keep verifying (no circuit breaker opens).
"""

from __future__ import annotations

from collections.abc import Mapping

from sipguard.shaken.config import X5uConfig
from sipguard.shaken.reasons import Reason
from sipguard.shaken.x5u import CertFetcher, Fetched, FetchError, HttpFetcher


class MapFetcher:
    """A CertFetcher over url -> bytes, with an optional fallback for other URLs."""

    def __init__(self, bodies: Mapping[str, bytes], fallback: CertFetcher | None = None) -> None:
        self.bodies = dict(bodies)
        self.fallback = fallback
        self.requests = 0

    async def fetch(self, url: str, *, crl: bool = False) -> Fetched:
        self.requests += 1
        body = self.bodies.get(url)
        if body is not None:
            return Fetched(body)
        if self.fallback is not None:
            return await self.fallback.fetch(url, crl=crl)
        raise FetchError(Reason.X5U_FETCH_FAILED, f"{url} is not in the x5u map", status=404)

    async def aclose(self) -> None:
        if self.fallback is not None:
            await self.fallback.aclose()


def make_fetcher(cfg: X5uConfig, x5u_map: Mapping[str, bytes] | None = None,
                 offline: bool = False) -> CertFetcher:
    """HTTP fetcher; with a map, the map first (and HTTP for the rest unless offline)."""
    if x5u_map is None:
        return HttpFetcher(cfg)
    return MapFetcher(x5u_map, None if offline else HttpFetcher(cfg))
