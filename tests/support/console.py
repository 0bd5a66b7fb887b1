"""The console page (/aura/console) driven in a real browser, as a person would use it.

Shared by the page's tests and ``tests.support.console_screenshot`` (the README's picture).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from playwright.sync_api import Browser, Page, Request, expect

EMAIL_PROMPT = "Send an email to kim@example.com saying the release is ready"
KOREAN_EMAIL_PROMPT = "kim@example.com 에게 회의 일정 메일 보내줘"
WAIT_MS = 20_000


@dataclass
class Console:
    page: Page
    base_url: str
    requests: list[str] = field(default_factory=list)  # every URL the page asked for

    @classmethod
    def open(cls, browser: Browser, base_url: str, *, width: int = 1400, height: int = 900) -> Console:
        page = browser.new_page(viewport={"width": width, "height": height}, locale="ko-KR")
        console = cls(page, base_url)
        page.on("request", console._record)
        page.goto(f"{base_url}/aura/console")
        page.wait_for_selector("#diagram svg .state")  # drawn from machine.json
        return console

    def _record(self, request: Request) -> None:
        self.requests.append(request.url)

    # -- identity ---------------------------------------------------------------------------
    def use_token(self, token: str) -> None:
        self.page.fill("#token", token)
        self.page.dispatch_event("#token", "change")

    def mint_dev_token(self) -> None:
        self.page.click("#mint")
        # Not wait_for_function: the page's policy forbids the eval it needs (no 'unsafe-eval').
        expect(self.page.locator("#token")).not_to_have_value("", timeout=WAIT_MS)

    # -- a session --------------------------------------------------------------------------
    def send(self, prompt: str) -> None:
        self.page.fill("#prompt", prompt)
        self.page.click("#send")

    def wait_for_approval(self) -> None:
        self.page.wait_for_selector("dialog#approval[open]", timeout=WAIT_MS)

    def approve(self) -> None:
        self.page.click("#approve")
        self.page.wait_for_selector("dialog#approval:not([open])", state="attached", timeout=WAIT_MS)

    def reject(self, reason: str) -> None:
        self.page.fill("#reject-reason", reason)
        self.page.click("#reject")
        self.page.wait_for_selector("dialog#approval:not([open])", state="attached", timeout=WAIT_MS)

    def wait_until_done(self) -> None:
        """Until the stream's ``data: [DONE]``."""
        self.page.wait_for_selector("#stream-status[data-status='done']", timeout=WAIT_MS)

    # -- what it shows ----------------------------------------------------------------------
    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def current_state(self) -> str:
        return self.page.get_attribute("#diagram", "data-state") or ""

    def highlighted_states(self) -> list[str]:
        return [str(node.get_attribute("data-state")) for node in self.page.query_selector_all("#diagram .state.current")]

    def tool_cards(self) -> list[tuple[str, str, str]]:
        """(step id, status, outcome text) of each card."""
        cards = []
        for card in self.page.query_selector_all("#tools .tool-card"):
            outcome = card.query_selector(".outcome")
            assert outcome is not None, card.inner_html()
            cards.append((str(card.get_attribute("data-step-id")), str(card.get_attribute("data-status")),
                          outcome.inner_text()))
        return cards

    def step_statuses(self) -> dict[str, str]:
        return {str(step.get_attribute("data-step-id")): str(step.get_attribute("data-status"))
                for step in self.page.query_selector_all("#plan li.step")}

    def listed_sessions(self) -> dict[str, str]:
        """Session id -> state, as the live-sessions list shows them."""
        return {str(row.get_attribute("data-session-id")): str(row.get_attribute("data-state"))
                for row in self.page.query_selector_all("#sessions .session-row")}

    def screenshot(self, path: str) -> None:
        self.page.screenshot(path=path, full_page=True)
