#!/usr/bin/env bash
# One command for a GPU check (docs: README "GPU check"): builds pyvs in place
# against the torch installed here, runs the CUDA tests, compute-sanitizer's
# memcheck and racecheck on the CUDA kernels, `pyvs run` and `pyvs sweep` on
# the GPU and on the CPU (which must agree bit for bit), both benchmarks
# (appended to benchmarks/RESULTS.md) and a profile of MobileNetV2.
#
# Sized for one 10-minute call of the device tool on an H100/H200 (16 CPU
# cores): the whole check is bounded by $BUDGET seconds (default 480); every
# step gets what is left of it. The CPU halves of the comparisons run in the
# background while the GPU steps run; timed steps run alone, last.
#
# $LOGS (default: $OUT where the device tool sets it, else gpu_check_logs/)
# receives at most 8 files: summary.txt (written first and after every step),
# build.log, tests.log, sanitizer.log, run.log, bench.log, profile.log,
# RESULTS.md. Scratch (JSONs, sweep folders) goes to $SCRATCH, never $LOGS.
# $STEPS picks steps (default "all": build tests sanitizers experiment bench
# profile; "ncu" adds Nsight Compute on scripts/kernel_cases.py; the build
# always runs), e.g. STEPS="tests bench" to re-time after a kernel change.
# Data: $PYVS_DATA (default .data/) holding labels.csv, imagenet_sample_224/
# and mobilenet_v2_int8_qnnpack_state_dict.pth. $PYVS_COMMIT names the commit
# where the checkout has no .git (the device tool copies the tree without it).
set -uo pipefail
cd "$(dirname "$0")/.."
LOGS=${LOGS:-${OUT:-gpu_check_logs}}
SCRATCH=${SCRATCH:-$(mktemp -d)}
BUDGET=${BUDGET:-480}
export PYVS_DATA=${PYVS_DATA:-.data} PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}  # built in place, not installed
PY=${PYTHON:-python3}
WEIGHTS=$PYVS_DATA/mobilenet_v2_int8_qnnpack_state_dict.pth
IMAGES=${IMAGES:-1000}
COMMIT=${PYVS_COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
export PYVS_COMMIT=$COMMIT
mkdir -p "$LOGS" "$SCRATCH"
: > "$LOGS/summary.txt"
note() { echo "$*" | tee -a "$LOGS/summary.txt"; }
STEPS=" ${STEPS:-all} "
want() { [[ "$STEPS" == *" all "* && "$1" != ncu ]] || [[ "$STEPS" == *" $1 "* ]]; }
left() { local l=$((BUDGET - SECONDS)); [ "$l" -lt 1 ] && l=1; echo "$l"; }  # never 0: timeout 0 = no limit
step() {  # step NAME LOG SECONDS CMD...: runs CMD within min(SECONDS, budget left), logs it, notes PASS/FAIL
  local name=$1 log=$2 limit=$3; shift 3
  local t0=$SECONDS rest; rest=$(left)
  [ "$rest" -lt "$limit" ] && limit=$rest
  if [ "$limit" -le 5 ]; then note "SKIP $name (budget spent)"; return 1; fi
  echo "== $name: $*" >> "$LOGS/$log"
  timeout -k 5 "$limit" "$@" >> "$LOGS/$log" 2>&1
  local rc=$?
  note "$([ $rc -eq 0 ] && echo PASS || echo "FAIL (exit $rc$([ $rc -eq 124 ] && echo ', time limit'))") $name ($((SECONDS - t0)) s)"
  return $rc
}

note "pyvs GPU check, $(date -u +%FT%TZ), commit $COMMIT, budget $BUDGET s"
note "$($PY -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "on", torch.cuda.get_device_name())' 2>&1 | tail -1)"
note "CPU: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); VNNI: $(grep -o -m1 -E 'avx512_vnni|avx_vnni' /proc/cpuinfo | sort -u | xargs echo || echo none)"

step build build.log 240 env MAX_JOBS=16 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} \
  $PY setup.py build_ext --inplace || { note "build failed: see build.log"; exit 1; }

# The CPU halves of the experiment comparisons, in the background from now on.
if want experiment; then
RUN="-m pyvs run --data $PYVS_DATA --weights $WEIGHTS --limit $IMAGES --voltage 0.515 --protect-msbs 1 --batch-size 100"
SWEEP="-m pyvs sweep --data $PYVS_DATA --weights $WEIGHTS --limit 100 --no-report"
( export OMP_NUM_THREADS=6
  timeout $(left) $PY $RUN --device cpu --json "$SCRATCH/run_cpu.json" > "$SCRATCH/run_cpu.log" 2>&1
  echo "run exit $?" >> "$SCRATCH/cpu_done"
  timeout $(left) $PY $SWEEP --device cpu --out "$SCRATCH/sweep_cpu" > "$SCRATCH/sweep_cpu.log" 2>&1
  echo "sweep exit $?" >> "$SCRATCH/cpu_done" ) &
CPU_JOB=$!
fi

XDIST=$($PY -c 'import xdist' 2>/dev/null && echo "-n 4")
want tests && step "CUDA tests (pytest -m needs_cuda ${XDIST})" tests.log 200 env OMP_NUM_THREADS=2 \
  $PY -m pytest -q -p no:cacheprovider $XDIST -m needs_cuda tests
want tests && note "  $(grep -E '[0-9]+ (passed|failed|skipped|error)' "$LOGS/tests.log" | tail -1)"

# The sanitizers on tests that launch every kernel (simple and patch, uint8
# and int8, groups, narrow accumulators, the table cache), without the
# caching allocator, which would hide out-of-bounds accesses inside its
# blocks; in the background while the experiment runs on the GPU.
want sanitizers && ( for tool in memcheck racecheck; do
    step "compute-sanitizer $tool" sanitizer.log 150 env PYTORCH_NO_CUDA_MEMORY_CACHING=1 OMP_NUM_THREADS=2 \
      compute-sanitizer --tool $tool --error-exitcode 99 \
      $PY -m pytest -q -p no:cacheprovider tests/test_ops.py \
      -k "cuda_groups_match_cpu or cuda_narrow_accumulators or tables_are_cached or group_slice_are_aligned"
    note "  $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' "$LOGS/sanitizer.log" | tail -1)"
  done ) &
SAN_JOB=$!

if want experiment; then
step "pyvs run --device cuda ($IMAGES images)" run.log 150 $PY $RUN --device cuda --json "$SCRATCH/run_cuda.json"
step "pyvs sweep --device cuda (100 images)" run.log 150 $PY $SWEEP --device cuda --out "$SCRATCH/sweep_cuda"
fi
wait $SAN_JOB 2>/dev/null
if want experiment; then
note "waiting for the CPU halves ($(left) s left)"
wait $CPU_JOB
cat "$SCRATCH/run_cpu.log" "$SCRATCH/sweep_cpu.log" >> "$LOGS/run.log" 2>/dev/null
note "  CPU halves: $(tr '\n' ';' < "$SCRATCH/cpu_done" 2>/dev/null)"

step "pyvs run: CUDA == CPU" run.log 30 $PY - "$SCRATCH/run_cpu.json" "$SCRATCH/run_cuda.json" <<'PYEOF'
import json, sys
timing = {"seconds", "images_per_s"}
a, b = (json.load(open(p)) for p in sys.argv[1:3])
diff = [(part, k) for part in ("clean", "point") for k in a[part]
        if k not in timing and a[part][k] != b[part][k]]
p = a["point"]
print(f"clean top-1 {a['clean']['top1']:.4f}, faulty top-1 {p['top1']:.4f}, agreement {p['agree']:.4f}, "
      f"injected {p['injected']}, corrected {p['corrected']}; GPU {b['point']['seconds']:.1f} s, "
      f"CPU {p['seconds']:.1f} s (faulty pass)")
print("differences:", diff or "none")
sys.exit(1 if diff else 0)
PYEOF
note "  $(grep -E '^clean top-1' "$LOGS/run.log" | tail -1)"

step "pyvs sweep: CUDA == CPU (rows and captured tables)" run.log 30 $PY - "$SCRATCH/sweep_cpu" "$SCRATCH/sweep_cuda" <<'PYEOF'
import json, os, sys
from pyvs.results import load_results
rows = [[{k: v for k, v in r.row().items() if k != "seconds"} for r in load_results(d)[0]] for d in sys.argv[1:3]]
tables = [json.load(open(os.path.join(d, "error_table.json"))) for d in sys.argv[1:3]]
same_rows, same_tables = rows[0] == rows[1], tables[0] == tables[1]
print(len(rows[0]), "points;", "rows identical" if same_rows else "rows DIFFERENT", ";",
      "captured tables identical" if same_tables else "captured tables DIFFERENT")
sys.exit(0 if rows[0] and same_rows and same_tables else 1)
PYEOF
note "  $(grep -E 'points;' "$LOGS/run.log" | tail -1)"
fi

# Timed steps, alone on the machine.
want bench && step "bench_op --device cuda --append" bench.log 120 $PY scripts/bench_op.py --device cuda --repeat 3 --append
want bench && step "bench_model --device cuda --append" bench.log 90 $PY scripts/bench_model.py --device cuda \
  --weights "$WEIGHTS" --data "$PYVS_DATA" --batches 4 --append
cp benchmarks/RESULTS.md "$LOGS/RESULTS.md"
want profile && step "profile_model (batch 256)" profile.log 60 $PY scripts/profile_model.py --device cuda --weights "$WEIGHTS"
want ncu && step "ncu: scripts/kernel_cases.py" profile.log 120 ncu --clock-control none \
  --kernel-name regex:"patch_kernel|simple_kernel" --launch-skip 1 --launch-count 3 \
  --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
  --section MemoryWorkloadAnalysis --section ComputeWorkloadAnalysis $PY scripts/kernel_cases.py

echo
echo "==== summary ($LOGS/summary.txt; $SECONDS s) ===="
cat "$LOGS/summary.txt"
! grep -q -E '^(FAIL|SKIP)' "$LOGS/summary.txt"
