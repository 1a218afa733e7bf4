"""Which files the tools may read: only those under the allowed roots.

An agent passes paths it was told about or made up; the server reads a path
only when, after resolving `..` and symbolic links, it lies inside one of the
roots (`som mcp --root DIR`, default the working directory).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable


class Roots:
    """Allowed folders, resolved once. `resolve(path)` -> the real file path; a path outside the
    roots raises PermissionError, a missing one FileNotFoundError (one-line messages)."""

    def __init__(self, roots: Iterable[str | os.PathLike] | None = None) -> None:
        paths = [Path.cwd()] if roots is None else [Path(r) for r in roots]
        if not paths:
            raise ValueError("at least one allowed root is needed (e.g. --root .)")
        resolved = []
        for p in paths:
            real = p.expanduser().resolve()
            if not real.is_dir():
                raise ValueError(f"allowed root {str(p)!r} is not a folder")
            resolved.append(real)
        self.paths: tuple[Path, ...] = tuple(dict.fromkeys(resolved))

    def __repr__(self) -> str:
        return f"Roots({[str(p) for p in self.paths]})"

    def resolve(self, path: str) -> Path:
        """The file `path` names, if it is inside a root. A relative path is looked up in each
        root in turn (the first where it exists wins)."""
        if not isinstance(path, str) or not path.strip():
            raise ValueError("path must be a non-empty string")
        if "\x00" in path:
            raise ValueError("path contains a NUL character")
        p = Path(path).expanduser()
        candidates = [p.resolve()] if p.is_absolute() else [(root / p).resolve() for root in self.paths]
        real = next((c for c in candidates if c.exists()), candidates[0])
        if not any(real == root or real.is_relative_to(root) for root in self.paths):
            roots = ", ".join(str(r) for r in self.paths)
            raise PermissionError(
                f"path {path!r} is outside the allowed roots ({roots}); the server reads only files under --root"
            )
        if not real.exists():
            raise FileNotFoundError(f"path {path!r}: no such file under the allowed roots")
        if not real.is_file():
            raise IsADirectoryError(f"path {path!r} is not a file")
        return real
