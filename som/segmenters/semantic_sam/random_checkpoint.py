"""Write a Semantic-SAM checkpoint with seeded random weights, in the official file's format.

    python -m som.segmenters.semantic_sam.random_checkpoint OUT.pth [--seed N]

For users without the real `swinl_only_sam_many2many.pth`: every code path (loading, clicks,
automatic marks, the toolbox) runs on it; the masks mean nothing. Weights come from
som.segmenters.seeded (each tensor from the seed, its key name and its shape), so the same seed
gives the same file everywhere. Modules the model shares under several names get one value, as
in a file saved from a trained model.
"""

from __future__ import annotations

import argparse
import os
import pathlib

import torch

from som.segmenters.seeded import seeded_state_dict
from som.segmenters.semantic_sam.checkpoint import to_file_state
from som.segmenters.semantic_sam.config import model_config
from som.segmenters.semantic_sam.model import SemanticSam


def random_file_state(seed: int = 0, config: dict | None = None) -> dict[str, torch.Tensor]:
    """The file's contents: `model.`-prefixed keys of a seeded random SemanticSam (SoM's
    configuration unless `config` overrides it)."""
    model = SemanticSam(model_config(config))
    model.load_state_dict(seeded_state_dict(model.state_dict(), seed))  # shared modules: the last name wins
    return to_file_state(model.state_dict())


def write_random_checkpoint(path: str | os.PathLike, seed: int = 0, config: dict | None = None) -> None:
    """Write the file (its folder is made when missing)."""
    pathlib.Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_file_state(seed, config), path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="file to write (e.g. checkpoints/swinl_only_sam_many2many.pth)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    write_random_checkpoint(args.out, args.seed)
    print(f"wrote {args.out} (random weights, seed {args.seed}); use it with --checkpoint {args.out}")


if __name__ == "__main__":
    main()
