"""Allow-lists that hold across HTTP redirects.

Chromium follows a redirect without asking a Playwright route again, so a route that only checks
the URL it is asked about lets an allowed host send the browser anywhere. `forward_unless_redirected`
fetches the request itself with redirects off: a redirect to a URL the caller does not allow comes
back to the caller (nothing was fetched from there); any other response goes to the browser,
which follows an allowed redirect through the route again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin

log = logging.getLogger(__name__)

_FETCH_ERRORS = {  # what route.fetch's error says -> the net:: error the browser would have shown
    "ECONNREFUSED": "connectionrefused",
    "ECONNRESET": "connectionreset",
    "ENOTFOUND": "namenotresolved",
    "EAI_AGAIN": "namenotresolved",
    "ETIMEDOUT": "timedout",
    "Timeout": "timedout",
    "EHOSTUNREACH": "addressunreachable",
    "ENETUNREACH": "addressunreachable",
}


def network_error(message: str) -> str:
    """The Playwright abort code for a failed fetch's message ('failed' when unknown)."""
    return next((code for key, code in _FETCH_ERRORS.items() if key in message), "failed")


def forward_unless_redirected(route: Any, allowed: Callable[[str], bool]) -> str | None:
    """Answer `route` with its response fetched here, redirects off. Returns the target of a
    redirect that `allowed` refuses, without answering the route (the caller blocks it); else None."""
    url = route.request.url
    try:
        response = route.fetch(max_redirects=0)
    except Exception as e:  # noqa: BLE001 - a failed fetch (refused, reset): the browser sees the same failure
        log.info("fetch of %s failed: %s", url[:200], str(e).strip().splitlines()[0] if str(e).strip() else e)
        route.abort(network_error(str(e)))
        return None
    location = response.headers.get("location")
    if 300 <= response.status < 400 and location:
        target = urljoin(url, location)
        if not allowed(target):
            return target
    route.fulfill(response=response)
    return None
