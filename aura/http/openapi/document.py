"""The OpenAPI 3.1 document of the app's real routes, the check that they and the descriptions agree, and
``GET /aura/openapi.json``.

The paths come from the routes the app has (``request.app.routes``), the operations from
:data:`~aura.http.openapi.operations.OPERATIONS`: a route that is not mounted (a feature turned off)
is not in the document. :func:`drift` names every route without a description and every description
without a route; the tests hold it empty.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route

from aura.http.openapi.operations import OPERATIONS, OPTIONAL, PATH_PARAMETERS, RESPONSES
from aura.http.openapi.schemas import SCHEMAS

OPENAPI_VERSION: Final = "3.1.0"
TABLE: Final = "OPERATIONS in aura/http/openapi/operations.py"
_CONVERTER: Final = re.compile(r"\{(\w+):\w+\}")  # Starlette's {name:converter}; OpenAPI has only {name}
_PARAMETER: Final = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class RoutedOperation:
    """One method of one route, as the app has it."""

    method: str
    path: str  # as OpenAPI writes it: /aura/console/{path}
    route_path: str  # as the app declares it: /aura/console/{path:path}

    @property
    def key(self) -> tuple[str, str]:
        return self.method, self.path


def routed_operations(routes: Sequence[BaseRoute], prefix: str = "") -> Iterator[RoutedOperation]:
    """Every method of every route, in the app's order; a mounted app (static files) is ``GET {mount}/{path}``."""
    for route in routes:
        if isinstance(route, Route):
            path = prefix + route.path
            methods = route.methods or {"GET"}
            for method in sorted(methods):
                if method == "HEAD" and "GET" in methods:  # Starlette adds HEAD to every GET
                    continue
                yield RoutedOperation(method, _CONVERTER.sub(r"{\1}", path), path)
        elif isinstance(route, Mount):
            if route.routes:
                yield from routed_operations(route.routes, prefix + route.path)
            else:
                path = f"{prefix}{route.path}/{{path:path}}"
                yield RoutedOperation("GET", _CONVERTER.sub(r"{\1}", path), path)
        else:
            raise TypeError(f"{type(route).__name__} {getattr(route, 'path', route)!r} cannot be described: "
                            f"only Route and Mount can")


def drift(routes: Sequence[BaseRoute]) -> list[str]:
    """What the app's routes and :data:`OPERATIONS` disagree on, one sentence each; empty when they agree."""
    routed = {operation.key: operation for operation in routed_operations(routes)}
    problems = [
        f"{method} {path} (route {operation.route_path!r}) has no description: add ({method!r}, {path!r}) to {TABLE}"
        for (method, path), operation in routed.items()
        if (method, path) not in OPERATIONS
    ]
    problems += [
        f"{method} {path} is described in {TABLE}, but the app has no such route"
        for method, path in OPERATIONS
        if (method, path) not in routed and (method, path) not in OPTIONAL
    ]
    return problems


def _service_version() -> str:
    try:
        return version("aura")
    except PackageNotFoundError:
        return "0+unknown"


def _operation(path: str, operation: dict[str, Any]) -> dict[str, Any]:
    """The entry with its path's parameters, from PATH_PARAMETERS (a plain string when not there)."""
    declared = {(p["name"], p["in"]) for p in operation.get("parameters", ())}
    path_parameters = [
        {"name": name, "in": "path", "required": True, **PATH_PARAMETERS.get(name, {"schema": {"type": "string"}})}
        for name in _PARAMETER.findall(path)
        if (name, "path") not in declared
    ]
    if not path_parameters:
        return operation
    return {**operation, "parameters": [*path_parameters, *operation.get("parameters", ())]}


INFO_DESCRIPTION: Final = (
    "Aura, the AI-agent runtime behind the DWP gateway: each request becomes an agent session, a state machine "
    "that plans, runs tools, pauses for a human's approval and streams what it does as Server-Sent Events.\n\n"
    "Authentication (CONTRACT §2): an HS256 JWT shared with the DWP services as `Authorization: Bearer`, whose "
    "`tenant_id` must equal `X-Tenant-ID` and whose `sub` must equal `X-User-ID` when that is sent; the approval "
    "API requires `X-User-ID` and a numeric `X-Tenant-ID`, as main-service does.\n\n"
    "Errors are the DWP ApiResponse envelope (CONTRACT §2.6) with its codes (§2.7) and Aura's E1005 for 429. "
    "Before any route, the HTTP server itself answers 431 (head too large), 408 (head or body too slow), 413 "
    "(body too large) and 503 with Retry-After: 1 (too many connections) with the same envelope "
    "(components.responses), and closes the connection."
)


def build_document(routes: Sequence[BaseRoute]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of those of ``routes`` that have a description, in the app's order."""
    paths: dict[str, dict[str, Any]] = {}
    for routed in routed_operations(routes):
        operation = OPERATIONS.get(routed.key)
        if operation is not None:
            paths.setdefault(routed.path, {})[routed.method.lower()] = _operation(routed.path, operation)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": "Aura", "version": _service_version(), "description": INFO_DESCRIPTION},
        "servers": [
            {"url": "/", "description": "Aura itself"},
            {"url": "/api", "description": "Through the DWP gateway, which routes /api/aura/** to Aura's /aura/** "
             "(CONTRACT §1.2), except /api/aura/hitl/**, which goes to main-service with the same semantics"},
        ],
        "tags": [
            {"name": "sessions", "description": "Agent sessions and their streams"},
            {"name": "approvals", "description": "Human-in-the-loop decisions (CONTRACT §4)"},
            {"name": "operations", "description": "Health, information, metrics, this description"},
            {"name": "console", "description": "The console for people (a page served by Aura)"},
        ],
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                               "description": "HS256 with JWT_SECRET's UTF-8 bytes; claims `sub`, `tenant_id`, `exp` "
                               "(CONTRACT §2.1-2.2)"},
                "tenantHeader": {"type": "apiKey", "in": "header", "name": "X-Tenant-ID",
                                 "description": "the caller's tenant; must equal the token's `tenant_id`"},
                "userHeader": {"type": "apiKey", "in": "header", "name": "X-User-ID",
                               "description": "the caller; must equal the token's `sub`"},
            },
        },
    }


class ApiDescriptionEndpoint:
    """``GET /aura/openapi.json``: the document of the app's routes, built once per set of routes."""

    def __init__(self) -> None:
        self._built: tuple[tuple[RoutedOperation, ...], bytes] | None = None

    async def document(self, request: Request) -> Response:
        routes: list[BaseRoute] = request.app.routes
        present = tuple(routed_operations(routes))
        if self._built is None or self._built[0] != present:
            body = json.dumps(build_document(routes), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            self._built = (present, body)
        return Response(self._built[1], media_type="application/json")
