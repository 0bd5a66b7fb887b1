"""uvicorn's access log without query strings: ``GET /aura/test/stream?prompt=…`` carries a prompt.

uvicorn logs ``'%s - "%s %s HTTP/%s" %d'`` on ``uvicorn.access`` with the path and its query
string as one argument. The filter cuts every string argument at its first ``?``; the client
address, the method and the HTTP version contain none, so only the query goes, whatever the
order of the arguments. Installed on the logger, it applies whatever handlers are configured.
"""

from __future__ import annotations

import logging
from typing import Final

ACCESS_LOGGER: Final = "uvicorn.access"


class WithoutQueryStrings(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and any(isinstance(arg, str) and "?" in arg for arg in args):
            record.args = tuple(arg.partition("?")[0] if isinstance(arg, str) else arg for arg in args)
        return True


_FILTER: Final = WithoutQueryStrings()


def install() -> None:
    """Idempotent: the one filter instance is added once however many servers are built."""
    logging.getLogger(ACCESS_LOGGER).addFilter(_FILTER)
