"""Write a full-size SEEM checkpoint with seeded random weights, in the official file format.

    python -m som.segmenters.seem.random_checkpoint OUT.pt [--seed N]

The file is what `seem_focall_v1.pt` is: a flat state dict of the whole model under the
reference's key names, plus its two inference-unused buffers. Its weights come from
`som.segmenters.seeded` (seed, key name, shape), so anyone can run the app's SEEM code paths
without the real download; the marks it gives mean nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def random_state(seed: int, cfg: dict | None = None) -> dict:
    import torch

    from som.segmenters.seeded import seeded_state_dict
    from som.segmenters.seem.model import SeemModel

    state = seeded_state_dict(SeemModel(cfg).state_dict(), seed)
    num_classes = SeemModel.num_classes_for(cfg)
    empty_weight = torch.ones(num_classes + 1)
    empty_weight[-1] = 0.1  # the reference's no-object weight
    state["criterion.empty_weight"] = empty_weight
    state["dilation_kernel"] = torch.ones(1, 1, 3, 3)
    return state


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="file to write, e.g. checkpoints/seem_focall_v1.pt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    import torch

    state = random_state(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, args.out)
    print(f"wrote {args.out} ({len(state)} tensors, seed {args.seed}; random weights, not the real SEEM)")


if __name__ == "__main__":
    main()
