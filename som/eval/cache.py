"""The on-disk response cache: a re-run costs nothing and a killed run resumes.

A reply is stored under the SHA-256 of the request that produced it: model, messages (the
image bytes included, as base64) and sampling parameters, in canonical JSON. The same
question about the same picture with the same settings is never asked twice; change any of
them and the key changes. Entries are written atomically (temp file + rename), so a run
killed mid-write leaves no half entry, only a missing one. Failed requests are not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence


def request_key(model: str, messages: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of (model, messages, params) as canonical JSON."""
    h = hashlib.sha256()
    h.update(json.dumps({"model": model, "params": dict(params)}, sort_keys=True, separators=(",", ":")).encode())
    h.update(b"\0")
    h.update(json.dumps(list(messages), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode())
    return h.hexdigest()


class ResponseCache:
    """Replies by request key, one JSON file each under `root/ab/abcdef....json`."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        if len(key) != 64 or not all(c in "0123456789abcdef" for c in key):
            raise ValueError(f"cache keys are SHA-256 hex digests, got {key!r}")
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored entry ({"text", "usage", ...}), or None (missing or unreadable)."""
        path = self._path(key)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("text"), str):
            return None
        return entry

    def put(self, key: str, entry: Mapping[str, Any]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({**entry, "key": key}, f, ensure_ascii=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def __len__(self) -> int:
        return sum(1 for _ in self.root.glob("??/*.json")) if self.root.is_dir() else 0


__all__ = ["ResponseCache", "request_key"]
