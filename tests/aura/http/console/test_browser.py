"""The console in headless Chromium (Debian's), against a real uvicorn and redis-server, as a person uses it.

No browser is a failure, not a skip (tests/support/browser.py).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import respx
import redis as sync_redis
from playwright.sync_api import Browser

from aura.config import DEV_JWT_SECRET
from tests.support.auth import make_token
from tests.support.browser import chromium, chromium_path
from tests.support.console import EMAIL_PROMPT, KOREAN_EMAIL_PROMPT, Console
from tests.support.live_server import LiveServer
from tests.support.llm import GATEWAY, LLM, MAIL_TOOL, text_stream, tool_call_stream
from tests.support.redis_server import RedisServer


KOREAN_REASON = "배포 일정이 아직 확정되지 않았습니다"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


def only_aura(console: Console, base_url: str) -> list[str]:
    """The URLs the page asked for that are not Aura's (the empty favicon is a data: URL)."""
    return [url for url in console.requests if not (url.startswith(f"{base_url}/") or url.startswith("data:"))]


def test_approve_then_reject_with_a_korean_reason(
    aura: LiveServer, redis_server: RedisServer, browser: Browser, tmp_path: Path
) -> None:
    console = Console.open(browser, aura.url)
    try:
        console.use_token(make_token("1", "1"))
        assert console.page.input_value("#tenant") == "1" and console.page.input_value("#user") == "1"

        # -- approve ---------------------------------------------------------------------------
        console.send(EMAIL_PROMPT)
        console.wait_for_approval()
        assert console.text("#approval-action") == "send_email"
        params = json.loads(console.text("#approval-params"))
        assert params["to"] == "kim@example.com"
        assert console.highlighted_states() == ["awaiting_approval"]
        session_id = console.text("#session-id")
        console.page.wait_for_selector(f"#sessions [data-session-id='{session_id}'][data-state='awaiting_approval']")
        console.screenshot(str(tmp_path / "approval.png"))
        console.approve()
        console.wait_until_done()

        [(step, status, outcome)] = console.tool_cards()  # one card per call, updated in place
        assert status == "completed" and "placed in outbox" in outcome and step.startswith("step-")
        assert set(console.step_statuses().values()) == {"completed"}
        assert console.text("#answer").startswith("Send the email: email msg_")
        assert console.highlighted_states() == ["done"] == [console.current_state()]
        assert console.page.is_hidden("#ending")
        transitions = console.text("#transitions")
        assert "awaiting_approval → executing: approve" in transitions and "executing → done: finish" in transitions
        console.screenshot(str(tmp_path / "approved.png"))

        # -- reject, with a Korean reason ------------------------------------------------------
        console.send(KOREAN_EMAIL_PROMPT)
        console.wait_for_approval()
        rejected_session = console.text("#session-id")
        assert rejected_session != session_id
        request_id = console.text("#approval-request")
        console.reject(KOREAN_REASON)
        console.wait_until_done()

        assert console.page.is_visible("#ending")
        assert KOREAN_REASON in console.text("#ending-message")  # the error's message quotes the reviewer
        assert console.text("#ending-kind") == "RejectionError · E2001 · rejected"
        explanation = console.text("#answer")  # the explanatory content, in the prompt's language
        assert explanation.startswith("승인이 거부되어 send_email 작업을 실행하지 않았습니다.") and KOREAN_REASON in explanation
        assert console.page.text_content("#answer-title") == "Why it ended"
        assert console.highlighted_states() == ["aborted"]
        assert console.tool_cards() == []  # the rejected call never ran
        console.screenshot(str(tmp_path / "rejected.png"))

        # What main-service would read: the page sent the reason as the rejection's body (CONTRACT §4.4).
        with sync_redis.Redis.from_url(redis_server.url, decode_responses=True) as r:
            record = json.loads(str(r.get(f"hitl:request:{request_id}")))
        assert record["status"] == "rejected" and record["reason"] == KOREAN_REASON and record["rejectedBy"] == "1"

        assert only_aura(console, aura.url) == []
        assert f"{aura.url}/aura/test/stream" in console.requests
        assert any(url.startswith(f"{aura.url}/aura/hitl/approve/req_") for url in console.requests)
        assert all(path.stat().st_size > 10_000 for path in tmp_path.glob("*.png"))
    finally:
        console.page.close()


def test_on_the_embedded_redis_a_dev_token_and_a_second_tab_that_follows_and_approves(
    start_server: Callable[..., LiveServer], browser: Browser, tmp_path: Path
) -> None:
    """What `make run` gives: no Redis configured, the public dev secret; the Mint button works."""
    server = start_server(redis_url=None, jwt_secret=DEV_JWT_SECRET, allow_dev_secret=True)
    first = Console.open(browser, server.url)
    second = Console.open(browser, server.url)
    try:
        first.mint_dev_token()
        first.send(EMAIL_PROMPT)
        first.wait_for_approval()
        session_id = first.text("#session-id")

        second.mint_dev_token()
        row = f"#sessions [data-session-id='{session_id}']"
        second.page.wait_for_selector(f"{row}[data-state='awaiting_approval']")
        assert second.text(f"{row} .prompt-text") == EMAIL_PROMPT  # the caller's own session shows its prompt
        second.page.click(f"{row} button")  # Follow: the log from its start, then live
        second.wait_for_approval()
        assert second.text("#session-id") == session_id
        second.approve()

        for console in (second, first):  # both tabs see the same ending
            console.wait_until_done()
            [(_, status, _)] = console.tool_cards()
            assert status == "completed" and console.highlighted_states() == ["done"]
        first.page.wait_for_selector("dialog#approval:not([open])", state="attached")  # closed by the end
        first.screenshot(str(tmp_path / "embedded.png"))
        assert only_aura(first, server.url) == [] and only_aura(second, server.url) == []
    finally:
        first.page.close()
        second.page.close()


def test_a_missing_browser_fails_loudly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AURA_CHROMIUM", str(tmp_path / "no-such-chromium"))
    with pytest.raises(RuntimeError, match="apt-get install chromium"):
        chromium_path()


def test_the_approval_dialog_closes_when_the_session_leaves_the_state_it_asked_in(
    start_server: Callable[..., LiveServer], browser: Browser, tmp_path: Path, mocked: respx.MockRouter
) -> None:
    """Regression: the dialog opened by `hitl` stayed open until the stream ended, so a tab whose
    session someone else approved kept showing the decided request while the tool ran."""
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps({"tools": [MAIL_TOOL]}))
    release = threading.Event()

    async def slow_mail(request: httpx.Request) -> httpx.Response:
        while not release.is_set():  # the tool runs until the test has looked at the page
            await asyncio.sleep(0.02)
        return httpx.Response(200, json={"status": "SUCCESS", "data": {"mailId": 7}})

    mocked.post(LLM).mock(side_effect=[
        tool_call_stream("send_dwp_mail", '{"to":"kim@example.com","subject":"Release"}', say="I will mail."),
        text_stream("Mail sent."),
    ])
    mocked.post(f"{GATEWAY}/api/mail/send").mock(side_effect=slow_mail)
    server = start_server(llm_base_url="https://llm.test/v1", llm_model="test-model", llm_max_retries=0,
                          llm_timeout_seconds=5, dwp_gateway_url=GATEWAY, tools_file=str(tools))
    console = Console.open(browser, server.url)
    try:
        console.use_token(make_token("1", "1"))
        console.send("Mail kim about the release")
        console.wait_for_approval()
        request_id = console.text("#approval-request")
        with httpx.Client(base_url=server.url, timeout=10) as client:  # someone else approves it
            answer = client.post(f"/aura/hitl/approve/{request_id}", json={"userId": "1"},
                                 headers={"Authorization": f"Bearer {make_token('1', '1')}",
                                          "X-Tenant-ID": "1", "X-User-ID": "1"})
            assert answer.status_code == 200, answer.text
        console.page.wait_for_selector("#tools .tool-card[data-status='executing']", timeout=10_000)
        console.page.wait_for_selector("dialog#approval:not([open])", state="attached", timeout=10_000)
        assert console.page.get_attribute("#stream-status", "data-status") != "done"  # still streaming
    finally:
        release.set()
    console.wait_until_done()
    console.page.close()
