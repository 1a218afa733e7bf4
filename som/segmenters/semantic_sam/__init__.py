"""Semantic-SAM (Li et al., 2023) in plain PyTorch: Swin-L backbone, deformable pixel decoder,
interactive decoder with 6 granularity tokens, SoM's automatic generator and a fast one.

No detectron2 and no compiled ops; the official checkpoint `swinl_only_sam_many2many.pth` loads
strictly by key name. Importing this package does not import torch: the modules do.

    config           sizes by the reference yaml's names (model_config)
    swin, deform_attn, pixel_encoder, decoder, model    the network
    checkpoint       reading the official file format, strict loading
    reference_amg    SoM's generator step by step (parity)
    fast_amg         the default generator (low-resolution filtering)
    segmenter        SemanticSamSegmenter (som's Segmenter contract) and its builder
    random_checkpoint   `python -m som.segmenters.semantic_sam.random_checkpoint OUT.pth`
"""
