#!/usr/bin/env bash
# Make the scratch environment for scripts/seem_reference.py and run it.
# Usage: scripts/seem_reference.sh SEEM_MIRROR_OR_URL DETECTRON2_MIRROR_OR_URL [SCRATCH_DIR]
# The reference and detectron2 run from source (never installed, never compiled); these are
# the packages their imports need, at the versions the fixtures were recorded with.
set -euo pipefail
mirror=$1
detectron2=$2
scratch=${3:-/tmp/seem-reference}
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$scratch/venv/bin/python" ]; then
  python3 -m venv "$scratch/venv"
  "$scratch/venv/bin/pip" install -q torch==2.14.1 torchvision==0.29.1 transformers==4.49.0 \
    tokenizers==0.21.4 timm==1.0.31 einops fvcore==0.1.5.post20221221 pycocotools \
    opencv-python-headless ftfy==6.1.1 regex==2023.10.3 yacs pyyaml json_tricks nltk \
    scikit-image kornia==0.9.0 sentencepiece imgviz omegaconf
  # only its BPE vocabulary file and SimpleTokenizer (the vocabulary check) are used
  "$scratch/venv/bin/pip" install -q --no-deps open_clip_torch==3.3.0
fi
exec "$scratch/venv/bin/python" "$here/scripts/seem_reference.py" --mirror "$mirror" \
  --detectron2 "$detectron2" --work "$scratch/work" --out "$here/tests/fixtures/seem"
