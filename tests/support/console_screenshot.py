"""Take the README's pictures of the console: ``python -m tests.support.console_screenshot [docs/]``.

What ``make run`` gives a person: Aura on the embedded Redis and the public dev secret, in headless
Chromium. It mints a dev token, sends the approval prompt and photographs the approval dialog
(``console-approval.png``), approves, and photographs the finished session (``console.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from aura.config import DEV_JWT_SECRET, Settings
from tests.support.browser import chromium
from tests.support.console import EMAIL_PROMPT, Console
from tests.support.live_server import LiveServer


def take(folder: Path) -> list[Path]:
    settings = Settings(jwt_secret=DEV_JWT_SECRET, allow_dev_secret=True)  # as make run: no Redis configured
    server = LiveServer(settings).start()
    try:
        with chromium() as browser:
            console = Console.open(browser, server.url, width=1440, height=660)
            console.mint_dev_token()
            console.send(EMAIL_PROMPT)
            console.wait_for_approval()
            console.page.wait_for_selector("#sessions .session-row[data-state='awaiting_approval']")
            approval = folder / "console-approval.png"
            console.page.screenshot(path=str(approval))
            console.approve()
            console.wait_until_done()
            finished = folder / "console.png"
            console.page.screenshot(path=str(finished))
            console.page.close()
    finally:
        server.stop()
    return [approval, finished]


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else Path("docs")
    for path in take(folder):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
