"""``GET /metrics``: this process's Prometheus registry, for a scraper inside the network.

Outside ``/aura/``, which is all the gateway forwards, and without a token, as scrapers expect
(docs/DECISIONS.md 59). What each series means is in :mod:`aura.metrics` and the README.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from aura.metrics import Metrics


class MetricsEndpoint:
    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    async def scrape(self, request: Request) -> Response:
        """The Prometheus text format, or OpenMetrics when the scraper's ``Accept`` asks for it."""
        body, content_type = self._metrics.exposition(request.headers.get("accept"))
        return Response(body, headers={"content-type": content_type, "cache-control": "no-store"})
