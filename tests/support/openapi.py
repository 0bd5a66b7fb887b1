"""The API description as a client reads it: its schemas as validators, and a check that a real
response (status, media type, headers, JSON body) and a real SSE frame are what it describes."""

from __future__ import annotations

import re
from typing import Any

import httpx
from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

URI = "urn:aura:openapi"


def _pointer(*parts: str) -> str:
    return "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in parts)


class ApiDescription:
    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self._registry: Registry[Any] = Registry().with_resource(URI, DRAFT202012.create_resource(document))
        self._templates = [(re.compile("^" + re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(path)) + "$"), path)
                           for path in document["paths"]]

    def errors(self, pointer: str, value: Any) -> list[str]:
        """What is wrong with ``value`` for the schema at ``pointer`` in the document, one line each."""
        validator = Draft202012Validator({"$ref": f"{URI}#{pointer}"}, registry=self._registry)
        return [f"{'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
                for error in validator.iter_errors(value)]

    def check(self, pointer: str, value: Any, what: str) -> None:
        problems = self.errors(pointer, value)
        assert not problems, f"{what} does not match {pointer}: {problems}\n{value}"

    def check_event(self, payload: dict[str, Any]) -> str:
        """A frame's data: JSON against the schema of its type (and StreamEvent); returns its type."""
        mapping = self.document["components"]["schemas"]["StreamEvent"]["discriminator"]["mapping"]
        type_ = payload.get("type")
        assert type_ in mapping, f"event type {type_!r} is not in the document: {payload}"
        self.check(mapping[type_].removeprefix("#"), payload, f"a {type_} event")
        self.check("/components/schemas/StreamEvent", payload, f"a {type_} event")
        return str(type_)

    def template_of(self, path: str) -> str:
        matches = [template for pattern, template in self._templates if pattern.match(path)]
        assert matches, f"{path} is not a path of the document"
        return str(min(matches, key=lambda template: template.count("{")))  # a literal segment wins

    def check_response(self, response: httpx.Response, *, body: bool = True) -> None:
        """The response is one the document describes for its request; ``body=False`` for a stream not read."""
        method = response.request.method.lower()
        template = self.template_of(response.request.url.path)
        operation = self.document["paths"][template].get(method)
        what = f"{method.upper()} {template} → {response.status_code}"
        assert operation is not None, f"{method.upper()} {template} is not described"
        pointer = _pointer("paths", template, method, "responses", str(response.status_code))
        described = operation["responses"].get(str(response.status_code))
        assert described is not None, f"{what} is not a described response: {response.headers} {response.text!r}"
        if "$ref" in described:
            pointer = described["$ref"].removeprefix("#")
            described = self._at(pointer)
        for name, header in described.get("headers", {}).items():
            if header.get("required"):
                assert name in response.headers, f"{what}: no {name} header"
            if name in response.headers:
                self.check(pointer + _pointer("headers", name, "schema"), response.headers[name], f"{what}: {name}")
        media = response.headers.get("content-type", "").split(";")[0].strip()
        assert media in described.get("content", {}), f"{what}: {media!r} is not described"
        if body and media == "application/json":
            self.check(pointer + _pointer("content", media, "schema"), response.json(), what)

    def _at(self, pointer: str) -> Any:
        node: Any = self.document
        for part in pointer.strip("/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node
