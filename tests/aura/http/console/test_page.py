"""The console's page, its files and the definition it draws, over a real uvicorn (no browser here)."""

from __future__ import annotations

import configparser
import fnmatch
import re
from collections.abc import Callable
from importlib import resources
from pathlib import Path

import httpx
import pytest

from aura.config import DEV_JWT_SECRET
from aura.http.console.page import CONTENT_SECURITY_POLICY
from statemachines import describe
from tests.support.live_server import LiveServer

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[4]
CONSOLE = resources.files("aura.http.console")
FILES = ("console.html", "static/console.js", "static/console.css")
SVG_NAMESPACE = "http://www.w3.org/2000/svg"  # a name, not something loaded


async def test_the_page_is_utf8_html_allowed_to_load_only_auras_own_files(client: httpx.AsyncClient) -> None:
    response = await client.get("/aura/console")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "default-src 'none'" in CONTENT_SECURITY_POLICY and "connect-src 'self'" in CONTENT_SECURITY_POLICY
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.text.startswith("<!doctype html>") and '<meta charset="utf-8">' in response.text
    assert response.content == CONSOLE.joinpath("console.html").read_bytes()


@pytest.mark.parametrize(("path", "media_type"), [
    ("/aura/console/static/console.js", "text/javascript"),
    ("/aura/console/static/console.css", "text/css"),
])
async def test_its_script_and_style_are_served_by_aura(client: httpx.AsyncClient, path: str, media_type: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith(media_type)
    assert response.content == CONSOLE.joinpath(path.removeprefix("/aura/console/")).read_bytes()


async def test_a_file_it_does_not_ship_is_the_404_envelope(client: httpx.AsyncClient) -> None:
    response = await client.get("/aura/console/static/%2e%2e/page.py")  # outside the static folder
    assert response.status_code == 404
    assert (await client.get("/aura/console/static/nothing.js")).json()["errorCode"] == "E1004"


async def test_a_trailing_slash_leads_to_the_page(client: httpx.AsyncClient) -> None:
    # The page's URLs are relative to /aura/console (DECISIONS #68): /aura/console/ would misplace them.
    response = await client.get("/aura/console/", follow_redirects=False)
    assert response.status_code in (307, 308) and response.headers["location"].endswith("/aura/console")


async def test_the_diagram_is_drawn_from_the_served_definition(client: httpx.AsyncClient) -> None:
    response = await client.get("/aura/console/machine.json")
    assert response.status_code == 200 and response.json() == describe()
    script = CONSOLE.joinpath("static/console.js").read_text(encoding="utf-8")
    # Nothing hand-copied: no state or trigger of the machine is named in the script ("executing",
    # "done", "failed" are words of the stream's own statuses too, and are left out of the check).
    for name in ("planning", "awaiting_approval", "aborted", "start_execution", "request_approval", "time_out",
                 "matches_pending_request", "has_pending_request"):
        assert name not in script, name


def test_nothing_outside_aura_is_referenced() -> None:
    for name in FILES:
        text = CONSOLE.joinpath(name).read_text(encoding="utf-8").replace(SVG_NAMESPACE, "")
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.IGNORECASE), name
        assert "@import" not in text and "url(" not in text.replace("url(#arrow)", ""), name


async def test_the_page_never_embeds_the_dev_secret(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(jwt_secret=DEV_JWT_SECRET, allow_dev_secret=True)
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        for path in ("/aura/console", "/aura/console/static/console.js", "/aura/console/static/console.css",
                     "/aura/console/machine.json"):
            response = await client.get(path)
            assert response.status_code == 200, path
            assert DEV_JWT_SECRET not in response.text, path


def test_the_package_ships_every_file_of_the_console() -> None:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    patterns = [p.strip() for p in config["options.package_data"]["aura.http.console"].split(",")]
    folder = ROOT / "aura" / "http" / "console"
    shipped = [path.relative_to(folder).as_posix() for path in folder.rglob("*")
               if path.is_file() and path.suffix not in (".py", ".pyc")]
    assert sorted(shipped) == sorted(FILES)
    for name in shipped:
        assert any(fnmatch.fnmatch(name, pattern) for pattern in patterns), name
