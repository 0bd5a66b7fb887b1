"""The HTTP adapter: Starlette routes over the runtime."""

from aura.http.app import create_app

__all__ = ["create_app"]
