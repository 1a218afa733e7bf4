#!/usr/bin/env bash
# The GPU benchmark in one command, for a lent machine (nvidia-h200: Python 3.12 with torch, no
# registry). First, here: `bash scripts/device_wheels.sh` (fills .whl/). There, in the repo root,
# with .whl carried: `bash benchmarks/device_check.sh`. It installs the wheels into $SITE (som is
# used from the tree, not installed), prints the machine, then runs benchmarks/amg.py twice, each
# under its own time limit so the whole script ends within ~8.5 minutes:
#   1. main:    ours vs the stock 32x32 generator at 1024 px, plus --batch images/s and --clicks
#   2. compile: ours vs ours-compile (torch.compile) in one run, no stock, no batch, no clicks;
#               separate so a slow or failing compile cannot lose step 1's result
# Exit status: 0 all ran, 1 step 1 (or setup) failed, 2 only step 2 failed (never 124: the device
# tool would read that as its own time-out). A step's own rc (124: its time limit) is in the log.
# Results: $OUT/log.txt, $OUT/main/amg-<device>-<date>.{json,png}, $OUT/compile/... (5 files).
# $OUT defaults to ./out/device (git-ignored) where the device tool does not set it. Without
# nvidia-smi it still runs (CPU), so it can be tried here with small settings, e.g.
#   PYTHON=/tmp/devsim/bin/python SIZE=256 STOCK_POINTS=4 REPEATS=1 BATCH=2 CLICKS=2 COMPILE=0 \
#     bash benchmarks/device_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
OUT=${OUT:-$PWD/out/device}
SITE=${SITE:-/tmp/site}
SIZE=${SIZE:-1024}
STOCK_POINTS=${STOCK_POINTS-32}  # '' for none
REPEATS=${REPEATS:-3}
STOCK_REPEATS=${STOCK_REPEATS:-1}
BATCH=${BATCH:-32}
CLICKS=${CLICKS:-20}
DEVICE=${DEVICE:-auto}
IMAGES=${IMAGES:-voc,arc2017}
COMPILE=${COMPILE:-1}  # 0: skip step 2
COMPILE_SETTINGS=${COMPILE_SETTINGS:-ours,ours-compile}
T_MAIN=${T_MAIN:-240}  # seconds per step, then SIGTERM (and SIGKILL 15 s later)
T_COMPILE=${T_COMPILE:-240}
export PYTHONUNBUFFERED=1

mkdir -p "$OUT"
rm -rf "${OUT:?}/main" "${OUT:?}/compile" "$OUT/log.txt"

step() {  # step NAME LIMIT_S ARGS...: one benchmark run under `timeout`; sets rc_NAME
  local name=$1 limit=$2 t0 rc
  shift 2
  echo
  echo "=== step $name (limit ${limit}s): $PY benchmarks/amg.py $* --out $OUT/$name"
  t0=$(date +%s)
  timeout -k 15 "$limit" "$PY" benchmarks/amg.py "$@" --out "$OUT/$name"
  rc=$?
  [ $rc -eq 124 ] && echo "=== step $name: TIMED OUT after ${limit}s"
  echo "=== step $name: rc=$rc in $(($(date +%s) - t0))s"
  printf -v "rc_$name" %s "$rc"
}

main() {
  local t_start rc=0
  t_start=$(date +%s)
  echo "=== $(date -Is) $(hostname) in $PWD; OUT=$OUT"
  if command -v nvidia-smi >/dev/null 2>&1; then
    timeout 60 nvidia-smi
  else
    echo "no nvidia-smi: running on CPU"
  fi

  if compgen -G ".whl/*.whl" >/dev/null; then
    echo "=== installing $(ls .whl | tr '\n' ' ')into $SITE"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl ||
      { echo "wheel install failed"; return 1; }
  else
    echo "=== no .whl/*.whl (run scripts/device_wheels.sh here and carry .whl); using what $PY has"
  fi
  export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

  "$PY" - <<'EOF' || { echo "=== imports failed: nothing benchmarked"; return 1; }
import platform, sys, torch, numpy, cv2, PIL, imgviz, segment_anything, som
from som.segmenters.mobile_sam_model import find_mobile_sam_checkpoint
print(f"python {platform.python_version()} ({sys.executable}); torch {torch.__version__} "
      f"(CUDA {torch.version.cuda}, available: {torch.cuda.is_available()}); numpy {numpy.__version__}; "
      f"opencv {cv2.__version__}; pillow {PIL.__version__}; imgviz {imgviz.__version__}")
if torch.cuda.is_available():
    print(f"gpu: {torch.cuda.get_device_name()}, bf16: {torch.cuda.is_bf16_supported()}")
print(f"som from {som.__file__}; segment_anything from {segment_anything.__file__}")
print(f"weights: {find_mobile_sam_checkpoint()}")
EOF

  step main "$T_MAIN" --images "$IMAGES" --size "$SIZE" --device "$DEVICE" --settings ours \
    --stock-points "$STOCK_POINTS" --repeats "$REPEATS" --stock-repeats "$STOCK_REPEATS" --batch "$BATCH" --clicks "$CLICKS"
  [ "$rc_main" -eq 0 ] || rc=1
  if [ "$COMPILE" != 0 ]; then
    step compile "$T_COMPILE" --images "$IMAGES" --size "$SIZE" --device "$DEVICE" --settings "$COMPILE_SETTINGS" \
      --stock-points '' --repeats "$REPEATS" --batch 0 --clicks 0
    [ "$rc_compile" -eq 0 ] || [ $rc -ne 0 ] || rc=2
  fi

  echo
  echo "=== summary: main rc=$rc_main${rc_compile:+, compile rc=$rc_compile}; $(($(date +%s) - t_start))s in all"
  for f in "$OUT"/*/*.json; do
    [ -e "$f" ] || continue
    "$PY" - "$f" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: {r['machine']['name']}, torch {r['machine']['torch']}")
for name, s in r["per_setting"].items():
    print(f"  {name}: {s}")
for k in ("batch", "interactive"):
    if k in r:
        print(f"  {k}: {r[k]}")
EOF
  done
  (cd "$OUT" && find . -type f | sort)
  return $rc
}

main 2>&1 | tee "$OUT/log.txt"
