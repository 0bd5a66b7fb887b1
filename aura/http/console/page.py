"""The console's page, its static files and the machine definition its diagram is drawn from.

The page calls Aura with URLs relative to itself (``test/stream``, ``hitl/approve/…``), so it works
at ``/aura/console`` and behind the gateway's ``/api/aura/console`` alike (DECISIONS #68).
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from statemachines import describe

_PACKAGE: Final = "aura.http.console"
PAGE_FILE: Final = "console.html"
STATIC_DIRECTORY: Final = "static"
# Everything from Aura itself and nothing inline, so no CDN (and no injected script) can run;
# data: for the empty favicon only.
CONTENT_SECURITY_POLICY: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS: Final = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class ConsolePage:
    def __init__(self) -> None:
        # Read once: a page that cannot be found fails the start, not the first visitor.
        self._page = resources.files(_PACKAGE).joinpath(PAGE_FILE).read_bytes()
        self._machine = describe()

    async def page(self, request: Request) -> Response:
        """``GET /aura/console``: the page, UTF-8, under a policy that allows only Aura's own files."""
        return Response(self._page, media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)

    async def machine(self, request: Request) -> Response:
        """``GET /aura/console/machine.json``: states and transitions of statemachines/session.py."""
        return JSONResponse(self._machine, headers={"Cache-Control": "no-cache"})

    def routes(self) -> list[BaseRoute]:
        static = StaticFiles(packages=[(_PACKAGE, STATIC_DIRECTORY)])
        return [
            Route("/aura/console", self.page, methods=["GET"]),
            Route("/aura/console/machine.json", self.machine, methods=["GET"]),
            Mount("/aura/console/static", app=static, name="console-static"),
        ]
