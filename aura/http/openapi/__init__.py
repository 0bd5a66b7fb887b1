"""The API description: an OpenAPI 3.1 document of the app's real routes, at ``GET /aura/openapi.json``.

``schemas`` holds every shape, ``operations`` what each route does (one entry per route and
method), ``document`` builds the document from the app's routes and checks the two agree.
"""

from aura.http.openapi.document import ApiDescriptionEndpoint, build_document, drift

__all__ = ["ApiDescriptionEndpoint", "build_document", "drift"]
