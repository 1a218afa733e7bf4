"""Results of earlier tool calls, per connection, with IDs and a size cap.

A client marks an image once and then refers to "result 3, mark 7" without
sending the image again. Each connection (an MCP session, or one Python
process for `som.tools.call`) has its own `ResultStore`; IDs count 1, 2, 3...
within it, so two clients never see each other's results. The store keeps the
newest results within `max_results` and `max_bytes` and drops the oldest
first; asking for a dropped ID says so. A connection's open web pages (`pages`, a
som.tools.pages.PageSet made by the first open_page) are closed with its store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Hashable

import numpy as np

DEFAULT_MAX_RESULTS = 32
DEFAULT_MAX_BYTES = 256 * 2**20
DEFAULT_MAX_CONNECTIONS = 64
DEFAULT_MAX_TOTAL_BYTES = 2 * 2**30


@dataclass
class StoredResult:
    """One marked image: the MarkResult and its marks document (regions_to_dict, computed once)."""

    result: Any  # som.pipeline.MarkResult
    doc: dict[str, Any]
    image_file: str | None = None
    nbytes: int = 0
    id: int = 0

    @staticmethod
    def size_of(result: Any, doc: dict[str, Any]) -> int:
        """Approximate memory: the two pictures, each region's box-sized mask, the RLE strings."""
        boxes = np.asarray(result.regions.xyxy, np.float64).reshape(-1, 4)
        wh = np.clip(boxes[:, 2:] - boxes[:, :2], 0, None)
        mask_bytes = float(np.sum(wh[:, 0] * wh[:, 1]))
        rle_bytes = sum(len((m.get("rle") or {}).get("counts", "")) for m in doc.get("marks", []))
        return int(np.asarray(result.image).nbytes + np.asarray(result.source).nbytes + mask_bytes + rle_bytes)


@dataclass
class ResultStore:
    """The results of one connection, newest last. Thread-safe."""

    max_results: int = DEFAULT_MAX_RESULTS
    max_bytes: int = DEFAULT_MAX_BYTES
    stateless: bool = False  # belongs to a request outside any connection: keeps nothing for later
    pages: Any = None  # the connection's open web pages (som.tools.pages.PageSet), made on first use
    _items: "OrderedDict[int, StoredResult]" = field(default_factory=OrderedDict, repr=False)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if self.max_results < 1:
            raise ValueError(f"max_results must be >= 1, got {self.max_results}")
        if self.max_bytes < 1:
            raise ValueError(f"max_bytes must be >= 1, got {self.max_bytes}")

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return sum(item.nbytes for item in self._items.values())

    def ids(self) -> list[int]:
        with self._lock:
            return list(self._items)

    def page_set(self, make: Any) -> Any:
        """The connection's PageSet, made by make() on first use."""
        with self._lock:
            if self.pages is None:
                self.pages = make()
            return self.pages

    def close(self, reason: str = "the connection closed") -> None:
        """Close the connection's open pages (its results go with the store)."""
        if self.pages is not None:
            self.pages.close_all(reason)

    def add(self, result: Any, doc: dict[str, Any], image_file: str | None = None) -> StoredResult:
        """Store a result under the next ID; drop the oldest ones beyond the caps (never the new one)."""
        item = StoredResult(result, doc, image_file, StoredResult.size_of(result, doc))
        with self._lock:
            item.id = self._next_id
            self._next_id += 1
            self._items[item.id] = item
            total = sum(i.nbytes for i in self._items.values())
            while len(self._items) > 1 and (len(self._items) > self.max_results or total > self.max_bytes):
                _, dropped = self._items.popitem(last=False)
                total -= dropped.nbytes
        return item

    def get(self, result_id: int) -> StoredResult:
        """The stored result; KeyError with a one-line reason when the ID is unknown or was dropped."""
        with self._lock:
            item = self._items.get(result_id)
            if item is not None:
                return item
            known = list(self._items)
            issued = self._next_id - 1
        if self.stateless:
            reason = (
                f"unknown result id {result_id}: this HTTP request carries no MCP session (Mcp-Session-Id), "
                "so no results are kept; connect with the initialize handshake to refer back to results"
            )
        elif 1 <= result_id <= issued:
            reason = (
                f"result {result_id} was dropped to stay within this connection's cap "
                f"({self.max_results} results, {self.max_bytes // 2**20} MiB); mark the image again"
            )
        else:
            have = f"results {', '.join(map(str, known))}" if known else "no results yet (call mark_image first)"
            reason = f"unknown result id {result_id}: this connection has {have}"
        raise KeyError(reason)


class StoreRegistry:
    """One ResultStore per connection key. The least recently used connections' stores are
    dropped beyond `max_connections`, or while all stores together hold more than
    `max_total_bytes` (an HTTP session that went away leaves no trace for long)."""

    def __init__(
        self,
        max_results: int = DEFAULT_MAX_RESULTS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    ) -> None:
        ResultStore(max_results, max_bytes)  # validate the caps now
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections}")
        if max_total_bytes < 1:
            raise ValueError(f"max_total_bytes must be >= 1, got {max_total_bytes}")
        self.max_results = max_results
        self.max_bytes = max_bytes
        self.max_connections = max_connections
        self.max_total_bytes = max_total_bytes
        self._stores: "OrderedDict[Hashable, ResultStore]" = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._stores)

    def for_connection(self, key: Hashable) -> ResultStore:
        with self._lock:
            store = self._stores.get(key)
            if store is None:
                store = self._stores[key] = ResultStore(self.max_results, self.max_bytes)
                while len(self._stores) > self.max_connections:
                    self._stores.popitem(last=False)[1].close("closed with the connection's results (server cap)")
            else:
                self._stores.move_to_end(key)
            return store

    def trim(self, keep: Hashable | None = None) -> list[Hashable]:
        """Drop whole stores, least recently used first (never `keep`'s), until all stores together
        fit in max_total_bytes. Returns the keys dropped."""
        dropped = []
        with self._lock:
            total = sum(store.nbytes for store in self._stores.values())
            for key in list(self._stores):
                if total <= self.max_total_bytes:
                    break
                if key == keep:
                    continue
                store = self._stores.pop(key)
                store.close("closed with the connection's results (server memory cap)")
                total -= store.nbytes
                dropped.append(key)
        return dropped

    def stateless(self) -> ResultStore:
        """A store for one request outside any connection: results cannot be referred to later."""
        return ResultStore(self.max_results, self.max_bytes, stateless=True)

    def forget(self, key: Hashable) -> None:
        with self._lock:
            store = self._stores.pop(key, None)
        if store is not None:
            store.close()

    def close_all(self) -> None:
        """Close every connection's pages (at shutdown)."""
        with self._lock:
            stores = list(self._stores.values())
        for store in stores:
            store.close("the server shut down")
