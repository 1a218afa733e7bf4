"""The agent tools as data: name, description and JSON Schema of the arguments.

One list, `TOOLS`, feeds both the MCP server (`tools/list`) and the OpenAI
function-calling schemas (`openai_tools()`), so the two never disagree. The
schemas use only `type`, `properties`, `required`, `additionalProperties`,
`items`, `enum`, `minimum`, `default` and `description`: every MCP protocol
version and every OpenAI-compatible endpoint reads those.

Pure data: nothing heavy is imported (the segmenter names come from the
registry's plain specs, the template names from the built-in prompt library).
"""

from __future__ import annotations

import copy
from typing import Any

from som.segmenters import DEFAULT_LEVEL, DEFAULT_SEGMENTER, GRANULARITY_LEVELS, SPECS

MARK_TYPES = ("mark", "mask", "box", "contour")
DEFAULT_MARK_TYPES = ["mark", "mask", "contour"]
GRANULARITIES = tuple(str(g.level) for g in GRANULARITY_LEVELS.values()) + tuple(
    g.name for g in GRANULARITY_LEVELS.values()
)
DEFAULT_GRANULARITY = GRANULARITY_LEVELS[DEFAULT_LEVEL].name
# the image tools; the screen/page tools (screen_marks, open_page, ...) come with the
# screens-and-web-pages work, which has not landed yet
TOOL_NAMES = ("mark_image", "regions", "ask")


def one_image_templates() -> list[str]:
    """Names of the built-in prompt templates that take one image (all but 'match')."""
    from som.llm.templates import load_templates

    lib = load_templates()
    return [name for name in lib.names() if lib.get(name).images == 1]


_IMAGE_INPUT: dict[str, Any] = {
    "path": {
        "type": "string",
        "description": "Image file on the server: absolute, or relative to an allowed root (the first where it "
        "exists). Only files under the allowed roots can be read.",
    },
    "image_base64": {
        "type": "string",
        "description": "The image file's bytes as base64 (PNG, JPEG, WebP, ...); a data: URL works too. "
        "Give either path or image_base64.",
    },
}

_MARKING: dict[str, Any] = {
    "segmenter": {
        "type": "string",
        "enum": sorted(SPECS),
        "default": DEFAULT_SEGMENTER,
        "description": f"Segmentation model. {DEFAULT_SEGMENTER} runs anywhere; sam-vit-* need a checkpoint on the "
        "server; superpixel needs no model.",
    },
    "granularity": {
        "type": "string",
        "enum": list(GRANULARITIES),
        "default": DEFAULT_GRANULARITY,
        "description": "nested (default): whole objects and their parts are both marks, a part's mark lies inside "
        "its whole and names the part, the whole's mark names the whole object; or one flat partition: "
        "1/parts, 2/objects, 3/wholes (coarser gives fewer, larger marks).",
    },
    "mark_types": {
        "type": "array",
        "items": {"type": "string", "enum": list(MARK_TYPES)},
        "default": DEFAULT_MARK_TYPES,
        "description": "What to draw for each region: the label (mark), a filled mask, its box, its contour.",
    },
    "label_mode": {
        "type": "string",
        "enum": ["number", "alphabet"],
        "default": "number",
        "description": "Labels 1, 2, 3... (number) or a, b, c... (alphabet).",
    },
}

_RESULT_ID = {
    "type": "integer",
    "minimum": 1,
    "description": "ID of an earlier result of this connection (returned by mark_image or ask).",
}


def _tools() -> list[dict[str, Any]]:
    return [
        {
            "name": "mark_image",
            "description": "Set-of-Mark an image: cut it into regions, draw a numbered (or lettered) mark on each. "
            "Returns the marked image and, per mark, its label, box (xyxy, pixels, x2/y2 exclusive) and area, "
            "plus a result_id to refer back to the marks later (regions, ask) without sending the image again.",
            "input_schema": {
                "type": "object",
                "properties": {**_IMAGE_INPUT, **_MARKING},
                "required": [],
                "additionalProperties": False,
            },
        },
        {
            "name": "regions",
            "description": "The regions behind marks of an earlier result: box, area and mask (COCO RLE, "
            "pycocotools-compatible, full image size) per label, optionally a picture highlighting them.",
            "input_schema": {
                "type": "object",
                "properties": {
                    "result_id": _RESULT_ID,
                    "labels": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Marks to return, as drawn (e.g. [\"3\", \"7\"]); omit for every mark.",
                    },
                    "masks": {
                        "type": "boolean",
                        "default": True,
                        "description": "Include each region's mask as COCO RLE.",
                    },
                    "highlight": {
                        "type": "boolean",
                        "default": False,
                        "description": "Also return the image with these regions shown and the rest dimmed.",
                    },
                },
                "required": ["result_id"],
                "additionalProperties": False,
            },
        },
        {
            "name": "ask",
            "description": "Ask the server's multimodal LLM (OpenAI-compatible endpoint configured on the server) a "
            "question about a marked image: an earlier result (result_id) or a new image (path or image_base64, "
            "marked first). Returns the answer and the marks it names (label, box, area).",
            "input_schema": {
                "type": "object",
                "properties": {
                    "question": {
                        "type": "string",
                        "default": "",
                        "description": "The question, expression or sentence (the list and label templates need none).",
                    },
                    "result_id": _RESULT_ID,
                    **_IMAGE_INPUT,
                    "template": {
                        "type": "string",
                        "enum": one_image_templates(),
                        "default": "chat",
                        "description": "Prompt template: chat (general), list (list items one by one), refer "
                        "(which mark is this?), ground (marks of each phrase), label (name every mark).",
                    },
                    "highlight": {
                        "type": "boolean",
                        "default": True,
                        "description": "Also return the image with the named regions shown and the rest dimmed.",
                    },
                    **_MARKING,
                },
                "required": [],
                "additionalProperties": False,
            },
        },
    ]


TOOLS: list[dict[str, Any]] = _tools()


def tool_specs() -> list[dict[str, Any]]:
    """The tools as {name, description, input_schema} dicts (a deep copy: callers may change it)."""
    return copy.deepcopy(TOOLS)


def openai_tools() -> list[dict[str, Any]]:
    """The same tools as OpenAI function-calling schemas:
    [{"type": "function", "function": {"name", "description", "parameters"}}, ...]."""
    return [
        {
            "type": "function",
            "function": {"name": t["name"], "description": t["description"], "parameters": t["input_schema"]},
        }
        for t in tool_specs()
    ]
