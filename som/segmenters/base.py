"""What every segmenter offers, and the granularity levels they share.

A segmenter only wraps a model: it turns an RGB image into candidate Regions
(possibly overlapping, with scores). Cleaning, de-overlap, numbering and
drawing happen later in pure functions (som.refine, som.layout, som.draw).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from som.regions import Regions

ProgressFn = Callable[[float, str], None]  # (fraction done 0..1, what is happening)


@dataclass(frozen=True)
class Granularity:
    """One step of the parts-to-wholes slider.

    mask_indices: which of SAM's three outputs per prompt to keep (0 sub-part, 1 part, 2 whole).
    min_area_frac / max_area_frac: area window of kept masks as a fraction of the image.
    prefer: which candidates win where they overlap: "small", "score" or "large".
    superpixel_segments: target segment count for the superpixel backend.
    nested: keep wholes and their parts together as nested regions (som.nest) instead of one
        flat partition; mask_indices, the area window and `prefer` still choose the candidates.
    """

    level: int
    name: str
    mask_indices: tuple[int, ...]
    min_area_frac: float
    max_area_frac: float
    prefer: str
    superpixel_segments: int
    nested: bool = False


GRANULARITY_LEVELS: dict[int, Granularity] = {
    1: Granularity(1, "parts", (0, 1), 0.0005, 0.25, "small", 120),
    2: Granularity(2, "objects", (0, 1, 2), 0.001, 0.85, "score", 60),
    3: Granularity(3, "wholes", (1, 2), 0.004, 0.95, "large", 25),
    4: Granularity(4, "nested", (0, 1, 2), 0.001, 0.95, "score", 60, nested=True),
}
DEFAULT_LEVEL = 4  # nested: on voc/arc2017 + 5 labelme photos it matches more objects than any flat level


GRANULARITY_HELP = (
    "1/parts, 2/objects, 3/wholes (flat partitions, finer to coarser) or 4/nested "
    f"(wholes with their parts inside them); default {DEFAULT_LEVEL}"
)


def granularity_choices() -> list[tuple[str, int]]:
    """(label, level) pairs for a UI control, e.g. ('4 nested', 4)."""
    return [(f"{g.level} {g.name}", g.level) for g in GRANULARITY_LEVELS.values()]


def granularity(level: int | str) -> Granularity:
    """Level by number or name: 1 'parts', 2 'objects', 3 'wholes' (flat partitions, finest to
    coarsest) or 4 'nested' (wholes with their parts inside them)."""
    for g in GRANULARITY_LEVELS.values():
        if str(level).lower() in (str(g.level), g.name):
            return g
    names = ", ".join(f"{g.level}/{g.name}" for g in GRANULARITY_LEVELS.values())
    raise ValueError(f"unknown granularity {level!r}; expected one of {names}")


@runtime_checkable
class Segmenter(Protocol):
    name: str
    device: str

    def segment_everything(
        self, image: np.ndarray, level: int | str = DEFAULT_LEVEL, progress: ProgressFn | None = None
    ) -> Regions:
        """(H, W, 3) uint8 RGB -> candidate Regions (may overlap), scores set."""
        ...

    def segment_prompts(
        self,
        image: np.ndarray,
        points_xy: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box_xyxy: np.ndarray | None = None,
    ) -> Regions:
        """One region from one gesture: points (K, 2) float pixel x,y with labels (K,) 1=positive
        0=negative, and/or a box (4,) x1,y1,x2,y2. Returns Regions of length 1 (may be empty mask).
        The image embedding is cached, so repeated prompts on the same image are cheap."""
        ...


# Optional methods and attributes. The Protocol above is what every segmenter has; callers
# check `hasattr(segmenter, name)` (or getattr for the attribute) before using these:
#
#   segment_prompt_choices(image, points_xy=None, point_labels=None, box_xyxy=None) -> Regions
#       Every mask one gesture yields (SAM: up to 3, Semantic-SAM: 6 granularities), ordered
#       small to large by area, scores set. The toolbox adds the middle one
#       (`middle_choice`) and steps to larger or smaller ones on request.
#   segment_text(image, text) -> Regions
#       The region(s) a text prompt ("the red mug") names; the toolbox adds them as one region.
#   knows_classes = True
#       The segmenter names what it finds: its Regions carry `categories` and
#       `category_scores`, and `segment_everything(image, level, progress, classes=[...])`
#       restricts (or extends) its vocabulary to the given class names.


def middle_choice(n_choices: int) -> int:
    """Which of n choices (small to large) a click adds first: the middle one, the lower of the
    two middles for an even count (3 -> 1, 6 -> 2, 2 -> 0), so "Larger" has as many steps
    as "Smaller" or one more."""
    if n_choices < 1:
        raise ValueError(f"middle_choice needs at least one choice, got {n_choices}")
    return (n_choices - 1) // 2


def check_classes(segmenter, classes) -> list[str] | None:
    """Normalise an open vocabulary ("mug, laptop" or ["mug", "laptop"]; None or empty: the
    segmenter's own) and check that `segmenter` can use it (attribute `knows_classes`)."""
    if classes is None:
        return None
    if isinstance(classes, str):
        classes = classes.split(",")
    names = [str(c).strip() for c in classes if str(c).strip()]
    if not names:
        return None
    if not getattr(segmenter, "knows_classes", False):
        raise ValueError(
            f"segmenter {getattr(segmenter, 'name', type(segmenter).__name__)!r} has no class vocabulary; "
            "use the 'seem' segmenter (--segmenter seem), which names classes"
        )
    return list(dict.fromkeys(names))


class LruCache:
    """A bounded least-recently-used map for per-image results (embeddings, decoded prompts).

    Not locked: a segmenter touches it under its own model lock. `clear()` is what
    `forget_images()` calls once no app session holds the images any more."""

    def __init__(self, size: int):
        from collections import OrderedDict

        self.size = size
        self._items: OrderedDict = OrderedDict()

    def get(self, key):
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key, value) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)

    def newest(self):
        """The value stored or looked up last (None when empty)."""
        return next(reversed(self._items.values()), None)

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


def image_key(image: np.ndarray) -> str:
    """Content hash of an image, for per-image caches (embeddings, superpixels)."""
    import hashlib

    data = memoryview(np.ascontiguousarray(image)).cast("B")  # no copy for a contiguous image
    return hashlib.blake2b(data, digest_size=16, key=f"{image.shape}{image.dtype}".encode()).hexdigest()


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when a GPU is usable, else 'cpu'. Other values are checked and returned."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but no CUDA GPU is visible; use --device cpu or auto")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ValueError(f"unknown device {device!r}; expected auto, cpu, cuda, cuda:N or mps")
    return device
