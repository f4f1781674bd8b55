#!/usr/bin/env bash
# One command for a GPU check (README "GPU check"): builds pyvs in place
# against the torch installed here, runs the CUDA tests, compute-sanitizer's
# memcheck and racecheck on the CUDA kernels, both benchmarks (appended to
# benchmarks/RESULTS.md), and `pyvs run` and `pyvs sweep` on the GPU and on
# the CPU, which must agree bit for bit. Logs go to $LOGS (default: $OUT
# where the device tool sets it, else gpu_check_logs/); a summary is printed
# last. Data: $PYVS_DATA (default .data/) holding labels.csv,
# imagenet_sample_224/ and mobilenet_v2_int8_qnnpack_state_dict.pth.
# Sized for one 10-minute call on an H100/H200 (16 CPU cores).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-${OUT:-gpu_check_logs}}
export PYVS_DATA=${PYVS_DATA:-.data} PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
WEIGHTS=$PYVS_DATA/mobilenet_v2_int8_qnnpack_state_dict.pth
IMAGES=${IMAGES:-1000}
mkdir -p "$LOGS"
: > "$LOGS/summary.txt"
note() { echo "$*" | tee -a "$LOGS/summary.txt"; }
step() {  # step NAME LOG SECONDS CMD...: runs CMD with a time limit, logs it, records PASS/FAIL
  local name=$1 log=$2 limit=$3; shift 3
  local t0=$SECONDS
  echo "== $name: $*" >> "$LOGS/$log"
  timeout "$limit" "$@" >> "$LOGS/$log" 2>&1
  local rc=$?
  note "$([ $rc -eq 0 ] && echo PASS || echo "FAIL (exit $rc)") $name ($((SECONDS - t0)) s)"
  return $rc
}

note "pyvs GPU check, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
note "$($PY -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name())' 2>&1)"

step build build.log 300 env MAX_JOBS=16 $PY setup.py build_ext --inplace || { note "build failed: see build.log"; exit 1; }

step "CUDA tests (pytest -m needs_cuda)" tests.log 240 $PY -m pytest -q -p no:cacheprovider -m needs_cuda tests
note "  $(grep -E '[0-9]+ (passed|failed)' "$LOGS/tests.log" | tail -1)"

# The sanitizers on a few tests that launch every kernel (simple and patch,
# uint8 and int8, groups, narrow accumulators), without the caching
# allocator, which would hide out-of-bounds accesses inside its blocks.
for tool in memcheck racecheck; do
  step "compute-sanitizer $tool" sanitizer.log 150 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 \
    compute-sanitizer --tool $tool --error-exitcode 99 \
    $PY -m pytest -q -p no:cacheprovider tests/test_ops.py -k "cuda_groups_match_cpu or cuda_narrow_accumulators"
  note "  $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/sanitizer.log" | tail -1)"
done

step "bench_op --device cuda --append" bench.log 150 $PY scripts/bench_op.py --device cuda --append
step "bench_model --device cuda --append" bench.log 120 $PY scripts/bench_model.py --device cuda \
  --weights "$WEIGHTS" --data "$PYVS_DATA" --append
cp benchmarks/RESULTS.md "$LOGS/RESULTS.md"

# The experiment on the GPU must give the CPU's results exactly.
RUN="-m pyvs run --data $PYVS_DATA --weights $WEIGHTS --limit $IMAGES --voltage 0.515 --protect-msbs 1 --batch-size 100"
step "pyvs run --device cuda ($IMAGES images)" run.log 120 $PY $RUN --device cuda --json "$LOGS/run_cuda.json"
step "pyvs run --device cpu ($IMAGES images)" run.log 300 $PY $RUN --device cpu --json "$LOGS/run_cpu.json"
step "pyvs run: CUDA == CPU" run.log 30 $PY - "$LOGS/run_cpu.json" "$LOGS/run_cuda.json" <<'PYEOF'
import json, sys
timing = {"seconds", "images_per_s"}
a, b = (json.load(open(p)) for p in sys.argv[1:3])
diff = [(part, k) for part in ("clean", "point") for k in a[part]
        if k not in timing and a[part][k] != b[part][k]]
p = a["point"]
print(f"clean top-1 {a['clean']['top1']:.4f}, faulty top-1 {p['top1']:.4f}, agreement {p['agree']:.4f}, "
      f"injected {p['injected']}, corrected {p['corrected']}")
print("differences:", diff or "none")
sys.exit(1 if diff else 0)
PYEOF
note "  $(grep -E '^clean top-1' "$LOGS/run.log" | tail -1)"

SWEEP="-m pyvs sweep --data $PYVS_DATA --weights $WEIGHTS --limit 100 --no-report"
step "pyvs sweep --device cuda (100 images)" sweep.log 120 $PY $SWEEP --device cuda --out "$LOGS/sweep_cuda"
step "pyvs sweep --device cpu (100 images)" sweep.log 300 $PY $SWEEP --device cpu --out "$LOGS/sweep_cpu"
step "pyvs sweep: CUDA == CPU" sweep.log 30 $PY - "$LOGS/sweep_cpu" "$LOGS/sweep_cuda" <<'PYEOF'
import sys
from pyvs.results import load_results
rows = [[{k: v for k, v in vars(r).items() if k != "seconds"} for r in load_results(d)[0]] for d in sys.argv[1:3]]
print(len(rows[0]), "points;", "identical" if rows[0] == rows[1] else "DIFFERENT")
sys.exit(0 if rows[0] and rows[0] == rows[1] else 1)
PYEOF
note "  $(grep -E 'points;' "$LOGS/sweep.log" | tail -1)"
# Only eight files come back from the device tool: drop the sweep folders.
rm -rf "$LOGS/sweep_cuda" "$LOGS/sweep_cpu" "$LOGS/run_cpu.json" "$LOGS/run_cuda.json"

echo
echo "==== summary ($LOGS/summary.txt) ===="
cat "$LOGS/summary.txt"
! grep -q '^FAIL' "$LOGS/summary.txt"
