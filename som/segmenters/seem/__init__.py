"""SEEM (Segment Everything Everywhere All at Once) in plain PyTorch: panoptic marks with COCO
class names, open-vocabulary classes, text prompts and click/box prompts, from the official
`seem_focall_v1.pt` checkpoint. Nothing here imports torch until a submodule is imported."""
