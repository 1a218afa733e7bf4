"""Web pages for the page tools: one Chromium per process, pages held per connection, allowed URLs.

Playwright's sync API belongs to the thread that started it, while tool calls arrive on worker
threads; so `BrowserHost` owns one thread (a one-worker executor) that starts Playwright and
Chromium on first use and runs every page operation, one at a time. Each connection has a
`PageSet`: its open pages under IDs 1, 2, 3..., at most `max_pages`, the least recently used
closed first; all connections together keep at most `BrowserHost.max_pages` open. Closing a
page closes its browser context; closing the host closes the browser.

`UrlPolicy`: http(s) URLs of the allowed hosts (`--allow-host`, default any) and file:// URLs
of files under the allowed roots; nothing else (data:, javascript:, chrome:...).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, TypeVar
from urllib.parse import unquote, urlsplit

from som.tools.roots import Roots

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_PAGES = 4  # per connection
DEFAULT_MAX_TOTAL_PAGES = 32  # per server process
RUN_TIMEOUT_S = 120.0  # a page operation that takes longer (a page stuck in a script) fails the call


class UrlNotAllowed(PermissionError):
    """A URL the server will not open (host not allowed, file outside the roots, other scheme)."""


class UrlPolicy:
    """Which URLs the browser may open. hosts: patterns `example.org` (that host), `*.example.org`
    (it and its subdomains), either with `:PORT` to pin the port; empty = any host."""

    def __init__(self, hosts: Iterable[str] = (), roots: Roots | None = None) -> None:
        self.patterns: list[tuple[str, int | None]] = []
        for raw in hosts:
            text = str(raw).strip().lower()
            if not text or "/" in text:
                raise ValueError(f"--allow-host takes a host name (example.org, *.example.org, host:port), got {raw!r}")
            host, port = text, None
            if text.startswith("["):  # [::1]:8000
                host, _, rest = text[1:].partition("]")
                port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
            elif text.count(":") == 1:
                host, _, p = text.partition(":")
                if not p.isdigit():
                    raise ValueError(f"--allow-host: bad port in {raw!r}")
                port = int(p)
            self.patterns.append((host, port))
        self.roots = roots

    @property
    def any_host(self) -> bool:
        return not self.patterns

    def describe(self) -> str:
        if self.any_host:
            return "any host"
        return ", ".join(h if p is None else f"{h}:{p}" for h, p in self.patterns)

    def host_allowed(self, host: str | None, port: int | None) -> bool:
        if self.any_host:
            return True
        host = (host or "").lower().rstrip(".")
        for pattern, want_port in self.patterns:
            if want_port is not None and port != want_port:
                continue
            if pattern.startswith("*."):
                base = pattern[2:]
                if host == base or host.endswith("." + base):
                    return True
            elif host == pattern:
                return True
        return False

    def check(self, url: str) -> str:
        """The URL to open (a bare path under the roots becomes file://); UrlNotAllowed or
        ValueError (one line) when it may not be opened."""
        if not isinstance(url, str) or not url.strip():
            raise ValueError("url must be a non-empty string")
        url = url.strip()
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme in ("http", "https"):
            if not parts.hostname:
                raise ValueError(f"url {url!r} has no host")
            try:
                port = parts.port or (443 if scheme == "https" else 80)
            except ValueError:
                raise ValueError(f"url {url!r} has a bad port") from None
            if not self.host_allowed(parts.hostname, port):
                raise UrlNotAllowed(f"url {url!r}: host {parts.hostname} is not allowed (allowed: {self.describe()}; "
                                    "the server takes --allow-host)")  # fmt: skip
            return url
        if scheme == "file" or not scheme:
            if self.roots is None:
                raise UrlNotAllowed(f"url {url!r}: file URLs need allowed roots")
            if scheme == "file" and parts.netloc not in ("", "localhost"):
                raise UrlNotAllowed(f"url {url!r}: file URLs on another machine are not allowed")
            path = unquote(parts.path) if scheme == "file" else url
            try:
                real = self.roots.resolve(path)
            except PermissionError as e:
                raise UrlNotAllowed(f"url {url!r}: {e}") from None
            except FileNotFoundError:
                if scheme:
                    raise ValueError(f"url {url!r}: no such file under the allowed roots") from None
                raise ValueError(f"url {url!r} is neither an http(s)/file URL nor a file under the allowed roots") from None
            except (ValueError, OSError) as e:
                raise ValueError(f"url {url!r}: {e}") from None
            return real.as_uri()
        raise UrlNotAllowed(f"url {url!r}: only http, https and file URLs (under the allowed roots) can be opened")

    def allows_loaded(self, url: str) -> bool:
        """Whether a page may stay at `url` after an action (about:blank counts as allowed)."""
        if url in ("about:blank", ""):
            return True
        try:
            self.check(url)
            return True
        except (ValueError, OSError):
            return False


class BrowserHost:
    """One headless Chromium for the process, driven from one thread. `run(fn)` runs fn() there
    and returns its result (exceptions pass through); `browser()` (on that thread) starts
    Playwright and Chromium on first use, and again if Chromium went away."""

    def __init__(self, max_pages: int = DEFAULT_MAX_TOTAL_PAGES) -> None:
        if max_pages < 1:
            raise ValueError(f"max pages must be >= 1, got {max_pages}")
        self.max_pages = max_pages
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._playwright: Any = None
        self._browser: Any = None
        # every open page of every connection, least recently used first (touched on the host thread only)
        self._open: "OrderedDict[tuple[int, int], tuple[PageSet, int]]" = OrderedDict()
        self.launches = 0

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            if self._closed:
                raise RuntimeError("the server's browser is shut down")
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="som-browser")
            return self._executor

    def run(self, fn: Callable[[], T], timeout_s: float = RUN_TIMEOUT_S) -> T:
        """fn() on the browser thread; TimeoutError (one line) when it has not finished in timeout_s
        (it still runs: the calls after it wait for it)."""
        future = self._pool().submit(fn)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()  # dropped if it had not started (the thread was busy)
            raise TimeoutError(f"the browser did not finish within {timeout_s:g} s (a page may be stuck)") from None

    def submit(self, fn: Callable[[], Any]) -> None:
        """Run fn() on the browser thread later (closing pages); failures are logged."""
        try:
            future = self._pool().submit(fn)
        except RuntimeError:
            return
        future.add_done_callback(lambda f: f.exception() and log.warning("closing pages: %s", f.exception()))

    @property
    def started(self) -> bool:
        return self._browser is not None

    def browser(self) -> Any:
        """The Chromium browser (call on the browser thread)."""
        if self._browser is not None and self._browser.is_connected():
            return self._browser
        from som.web.page import launch_browser

        if self._playwright is None:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                raise ImportError("the page tools need Playwright: pip install 'som[web]'") from None
            self._playwright = sync_playwright().start()
        self._browser = launch_browser(self._playwright)
        self.launches += 1
        log.info("started Chromium for the page tools")
        return self._browser

    # ---- the process-wide page cap (browser thread)
    def track(self, pages: "PageSet", page_id: int) -> None:
        key = (id(pages), page_id)
        self._open[key] = (pages, page_id)
        self._open.move_to_end(key)
        while len(self._open) > self.max_pages:
            (_, (owner, pid)) = next(iter(self._open.items()))
            owner.close(pid, f"closed to stay within the server's cap of {self.max_pages} open pages")

    def untrack(self, pages: "PageSet", page_id: int) -> None:
        self._open.pop((id(pages), page_id), None)

    def touch(self, pages: "PageSet", page_id: int) -> None:
        key = (id(pages), page_id)
        if key in self._open:
            self._open.move_to_end(key)

    def close(self, timeout_s: float = 20.0) -> None:
        """Close every page and the browser, and end the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            executor = self._executor
        if executor is None:
            return

        def shutdown() -> None:
            for owner, pid in list(self._open.values()):
                owner.close(pid, "the server shut down")
            for obj, how in ((self._browser, "close"), (self._playwright, "stop")):
                if obj is not None:
                    try:
                        getattr(obj, how)()
                    except Exception:  # noqa: BLE001 - best effort at shutdown
                        pass
            self._browser = self._playwright = None

        try:
            executor.submit(shutdown).result(timeout_s)
        except Exception as e:  # noqa: BLE001 - at interpreter exit the thread may be gone already
            log.debug("closing the browser: %s", e)
        executor.shutdown(wait=False)


@dataclass
class OpenPage:
    """A page held for a connection: its latest marks (PageMarks, which owns the browser context)
    and how it is marked (full_page, kinds)."""

    id: int
    marks: Any
    options: dict[str, Any] = field(default_factory=dict)


class PageSet:
    """The open pages of one connection (touch only on the browser thread, except `close_all`)."""

    def __init__(self, host: BrowserHost, max_pages: int = DEFAULT_MAX_PAGES) -> None:
        if max_pages < 1:
            raise ValueError(f"max pages must be >= 1, got {max_pages}")
        self.host = host
        self.max_pages = max_pages
        self._pages: "OrderedDict[int, OpenPage]" = OrderedDict()
        self._gone: dict[int, str] = {}
        self._next_id = 1
        self._closed = False

    def __len__(self) -> int:
        return len(self._pages)

    def ids(self) -> list[int]:
        return list(self._pages)

    def add(self, marks: Any, options: dict[str, Any]) -> OpenPage:
        if self._closed:
            marks.close()
            raise RuntimeError("this connection is closed")
        entry = OpenPage(self._next_id, marks, options)
        self._next_id += 1
        self._pages[entry.id] = entry
        while len(self._pages) > self.max_pages:
            oldest = next(iter(self._pages))
            self.close(oldest, f"closed to keep this connection within its cap of {self.max_pages} open pages")
        self.host.track(self, entry.id)
        return entry

    def get(self, page_id: int | None) -> OpenPage:
        """The page (None: the most recently used); KeyError with a one-line reason."""
        if page_id is None:
            if not self._pages:
                why = " (the last one was " + self._gone[max(self._gone)] + ")" if self._gone else ""
                raise KeyError(f"no page is open on this connection{why}; call open_page first")
            page_id = next(reversed(self._pages))
        entry = self._pages.get(page_id)
        if entry is None:
            if page_id in self._gone:
                raise KeyError(f"page {page_id} is closed ({self._gone[page_id]}); open it again with open_page")
            have = ", ".join(map(str, self._pages)) or "none"
            raise KeyError(f"unknown page id {page_id}: this connection's open pages are {have}")
        if entry.marks.page.is_closed():
            self.close(page_id, "the page closed itself")
            raise KeyError(f"page {page_id} is closed (the page closed itself); open it again with open_page")
        self._pages.move_to_end(page_id)
        self.host.touch(self, page_id)
        return entry

    def close(self, page_id: int, reason: str) -> bool:
        entry = self._pages.pop(page_id, None)
        self.host.untrack(self, page_id)
        if entry is None:
            return False
        self._gone[page_id] = reason
        try:
            entry.marks.close()
        except Exception as e:  # noqa: BLE001 - the browser may be gone already
            log.info("closing page %s: %s", page_id, e)
        log.info("page %s is closed (%s)", page_id, reason)
        return True

    def close_all(self, reason: str) -> None:
        """Close every page (from any thread: runs on the browser thread)."""

        def job() -> None:
            self._closed = True
            for pid in list(self._pages):
                self.close(pid, reason)

        if self._pages:
            self.host.submit(job)
        else:
            self._closed = True


_shared: BrowserHost | None = None
_shared_lock = threading.Lock()


def shared_host() -> BrowserHost:
    """The process's browser host (made on first use; nothing starts until a page is opened)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = BrowserHost()
            import atexit

            atexit.register(_shared.close)
        return _shared

