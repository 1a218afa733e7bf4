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
# what som.screen and som.web mark (som.screen.marks.SCREEN_KINDS, som.web.page.KINDS without
# "vision"); written out so that this module stays light, checked against them by the tests
SCREEN_KINDS = ("text", "icon", "control", "image")
PAGE_KINDS = ("link", "button", "input", "toggle", "menu", "clickable")
SCROLL_DIRECTIONS = ("down", "up", "right", "left")
PAGE_TOOLS = ("open_page", "page_marks", "click_mark", "type_mark", "select_mark", "scroll", "close_page")
TOOL_NAMES = ("mark_image", "regions", "ask", "screen_marks", *PAGE_TOOLS)


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
    "classes": {
        "type": "array",
        "items": {"type": "string"},
        "description": "Open vocabulary, e.g. [\"mug\", \"laptop\"]: class names for a segmenter that names what it "
        "finds (seem); each mark then carries a category. Other segmenters refuse it.",
    },
    "names": {
        "type": "boolean",
        "default": False,
        "description": "Print each mark's class name beside its label in the image (\"3: mug\"), where known.",
    },
}

_LABEL_MODE = _MARKING["label_mode"]

_PAGE_ID = {
    "type": "integer",
    "minimum": 1,
    "description": "ID of an open page of this connection (returned by open_page); omit for the page used last.",
}

_PAGE_LABEL = {
    "type": "string",
    "description": "The mark to act on, as drawn in the page's latest marked screenshot (e.g. \"7\").",
}

_AFTER = (
    " Returns the page's new marked screenshot and marks (labels are renumbered: use the new ones) and a "
    "result_id for regions and ask."
)

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
        {
            "name": "screen_marks",
            "description": "Set-of-Mark a screenshot (no DOM needed): text read by OCR, icons, controls and "
            "pictures each get a numbered mark. Returns the marked screenshot and, per mark, its label, box (xyxy, "
            "pixels), kind (text, icon, control, image) and the text read in it, plus a result_id (for regions "
            "and ask).",
            "input_schema": {
                "type": "object",
                "properties": {
                    **_IMAGE_INPUT,
                    "kinds": {
                        "type": "array",
                        "items": {"type": "string", "enum": list(SCREEN_KINDS)},
                        "description": "Kinds of marks to keep (default: all of text, icon, control, image).",
                    },
                    "label_mode": _LABEL_MODE,
                },
                "required": [],
                "additionalProperties": False,
            },
        },
        {
            "name": "open_page",
            "description": "Open a web page in the server's headless browser and mark every element a user can "
            "act on in view (links, buttons, inputs, toggles, menus). The page stays open for this connection "
            "(a few at a time; the least recently used is closed first). Returns a page_id, the marked "
            "screenshot and, per mark, its label, box (xyxy, screenshot pixels), kind, tag, role, name, text, "
            "value... and a result_id. Act on it with click_mark, type_mark, select_mark and scroll.",
            "input_schema": {
                "type": "object",
                "properties": {
                    "url": {
                        "type": "string",
                        "description": "http(s) URL (the server may allow only some hosts), or a file:// URL or "
                        "path of an HTML file under the allowed roots.",
                    },
                    "width": {"type": "integer", "minimum": 200, "default": 1280, "description": "Viewport width, CSS px."},
                    "height": {"type": "integer", "minimum": 200, "default": 800, "description": "Viewport height, CSS px."},
                    "full_page": {
                        "type": "boolean",
                        "default": False,
                        "description": "Mark the whole page, not just the viewport (a taller screenshot).",
                    },
                    "kinds": {
                        "type": "array",
                        "items": {"type": "string", "enum": list(PAGE_KINDS)},
                        "description": "Element kinds to mark (default: all).",
                    },
                },
                "required": ["url"],
                "additionalProperties": False,
            },
        },
        {
            "name": "page_marks",
            "description": "Mark an open page again as it is now (after it changed by itself, or with another "
            "full_page)." + _AFTER,
            "input_schema": {
                "type": "object",
                "properties": {
                    "page_id": _PAGE_ID,
                    "full_page": {
                        "type": "boolean",
                        "description": "Mark the whole page, not just the viewport (default: as when opened).",
                    },
                },
                "required": [],
                "additionalProperties": False,
            },
        },
        {
            "name": "click_mark",
            "description": "Click the element under a mark of an open page (waits until it can be clicked, then "
            "for the page to load)." + _AFTER,
            "input_schema": {
                "type": "object",
                "properties": {"page_id": _PAGE_ID, "label": _PAGE_LABEL},
                "required": ["label"],
                "additionalProperties": False,
            },
        },
        {
            "name": "type_mark",
            "description": "Type text into the text field under a mark of an open page (its old text is "
            "replaced); with submit, press Enter after it." + _AFTER,
            "input_schema": {
                "type": "object",
                "properties": {
                    "page_id": _PAGE_ID,
                    "label": _PAGE_LABEL,
                    "text": {"type": "string", "description": "The text to type."},
                    "submit": {"type": "boolean", "default": False, "description": "Press Enter after typing."},
                },
                "required": ["label", "text"],
                "additionalProperties": False,
            },
        },
        {
            "name": "select_mark",
            "description": "Choose an option of the drop-down list (<select>) under a mark of an open page, by "
            "its visible text or value." + _AFTER,
            "input_schema": {
                "type": "object",
                "properties": {
                    "page_id": _PAGE_ID,
                    "label": _PAGE_LABEL,
                    "option": {"type": "string", "description": "The option's visible text (or its value)."},
                },
                "required": ["label", "option"],
                "additionalProperties": False,
            },
        },
        {
            "name": "scroll",
            "description": "Scroll an open page by a part of the viewport." + _AFTER,
            "input_schema": {
                "type": "object",
                "properties": {
                    "page_id": _PAGE_ID,
                    "direction": {
                        "type": "string",
                        "enum": list(SCROLL_DIRECTIONS),
                        "default": "down",
                        "description": "Which way to scroll.",
                    },
                    "amount": {
                        "type": "number",
                        "minimum": 0.05,
                        "default": 0.8,
                        "description": "How far, in viewports (0.8 = four fifths of the visible height or width).",
                    },
                },
                "required": [],
                "additionalProperties": False,
            },
        },
        {
            "name": "close_page",
            "description": "Close an open page of this connection (its results stay available).",
            "input_schema": {
                "type": "object",
                "properties": {"page_id": {**_PAGE_ID, "description": "ID of the open page to close."}},
                "required": ["page_id"],
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
