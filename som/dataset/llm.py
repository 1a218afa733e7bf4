"""The optional `--llm` step: richer per-mark descriptions for the listing task.

After marking, each marked image goes to an OpenAI-compatible model with the `list`
prompt template (and, when known, the ground-truth category of every mark as a hint);
the reply is parsed with `som.llm.parse_mark_lines`. Requests run `concurrency` at a
time. Every reply is cached in OUT/llm/NAME.json (atomically, keyed by model and
prompt), so a rerun asks again only for images with no cached reply: the step is
resumable and, once cached, deterministic. Marks the model skipped keep the plain
ground-truth text. Failures are reported per image and never cached.
"""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable

from som.dataset.core import LLM_DIR, PARTS, atomic_write


def _prompt(part: dict, label_mode: str) -> tuple[str, str]:
    from som.llm.templates import load_templates

    labels = [m["label"] for m in part["marks"]]
    hints = [f"[{m['label']}] {m['category']}" for m in part["marks"] if m.get("category")]
    question = ""
    if hints:
        question = "The category of each mark is known; describe the object in more detail than its category: " + ", ".join(hints) + "."
    rendered = load_templates().get("list").render(question, labels=labels, label_mode=label_mode)
    return rendered.system, rendered.user


def _key(model: str, system: str, user: str, image_bytes: bytes) -> str:
    h = hashlib.sha256()
    for piece in (model.encode(), system.encode(), user.encode(), image_bytes):
        h.update(hashlib.sha256(piece).digest())
    return h.hexdigest()


def describe_all(
    out_dir: Path,
    names: list[str],
    label_mode: str,
    client: Any,
    concurrency: int = 4,
    on_done: Callable[[str, str | None], None] | None = None,
) -> dict[str, dict[str, str]]:
    """Descriptions {name: {label: text}} for every built image in `names`, asking the model
    only where OUT/llm holds no matching cached reply. on_done(name, error or None)."""
    import numpy as np
    from PIL import Image

    from som.llm.client import build_messages
    from som.llm.errors import LLMError
    from som.llm.parse import parse_mark_lines

    (out_dir / LLM_DIR).mkdir(exist_ok=True)
    model = client.config.model
    results: dict[str, dict[str, str]] = {}
    todo = []
    for name in names:
        part_path = out_dir / PARTS / f"{name}.json"
        if not part_path.exists():
            continue
        part = json.loads(part_path.read_text())
        if not part["marks"] or not any(r["task"] == "listing" for r in part["records"]):
            continue
        image_bytes = (out_dir / part["image"]).read_bytes()
        system, user = _prompt(part, label_mode)
        key = _key(model, system, user, image_bytes)
        cache = out_dir / LLM_DIR / f"{name}.json"
        if cache.exists():
            cached = json.loads(cache.read_text())
            if cached.get("key") == key:
                results[name] = cached["descriptions"]
                continue
        todo.append((name, part, image_bytes, system, user, key, cache))

    def ask(item) -> tuple[str, dict | None, str | None]:
        name, part, image_bytes, system, user, key, cache = item
        import io

        image = np.asarray(Image.open(io.BytesIO(image_bytes)).convert("RGB"))
        labels = [m["label"] for m in part["marks"]]
        try:
            reply = client.complete(build_messages(system, user, [image], client.config))
        except LLMError as e:
            return name, None, f"{e.kind}: {e}"
        descriptions = parse_mark_lines(reply, valid_labels=labels, label_mode=label_mode)
        descriptions = {k: v for k, v in descriptions.items() if v}
        doc = {"key": key, "model": model, "reply": reply, "descriptions": descriptions}
        atomic_write(cache, json.dumps(doc, ensure_ascii=False, indent=1))
        return name, descriptions, None

    with ThreadPoolExecutor(max(1, concurrency)) as pool:
        futures = [pool.submit(ask, item) for item in todo]
        for f in as_completed(futures):
            name, descriptions, error = f.result()
            if descriptions is not None:
                results[name] = descriptions
            if on_done is not None:
                on_done(name, error)
    return {n: results[n] for n in names if n in results}
