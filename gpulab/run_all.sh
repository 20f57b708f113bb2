#!/usr/bin/env bash
# The one command for the lent GPU machine (device tool, carry ["bundle"]):
#
#   bash gpulab/run_all.sh
#
# 1. remote_setup.sh (wheels, ComfyUI, random SD1.5 checkpoint, comfyrig, env report)
# 2. python3 -m pytest -m "gpu or comfyui" -v -n 0 tests/   -> junit.xml, pytest.log (one at a time: they share the GPUs)
# 3. every gpulab/bench_*.py (python3 -m gpulab.NAME)  -> its own JSON + Markdown
# 4. summarize.py                                      -> summary.md (+ results.tar.gz)
#
# Results go to $OUT (the device tool's return folder), else ./gpu-results/.
# Each step has its own time limit and none stops the others; the whole run
# stays under RUN_ALL_BUDGET_S (default 520 s), inside the tool's 600 s.
# A bench script must accept --out DIR and --budget-s SECONDS; BENCH_ARGS adds
# arguments to every bench. To split the work over two device calls:
#   PYTEST=0 skips the tests; BENCHES="bench_fleet bench_startup" runs only those
#   benches (default: all); PYTEST_LIMIT_S (default 200) bounds the tests.
# arguments to every bench (for a quick check: BENCH_ARGS="--jobs 4").
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 1
OUT="${OUT:-$REPO/gpu-results}"
mkdir -p "$OUT"
export OUT PYTHONUNBUFFERED=1
export COMFYRIG_RESULTS_DIR="$OUT"  # gpu-marked tests record what they observed there
BUDGET="${RUN_ALL_BUDGET_S:-520}"
SUMMARY_RESERVE=25
T0=$SECONDS
STEPS="$OUT/steps.tsv"
: > "$STEPS"
export COMFYRIG_GPU_ENV=/tmp/comfyrig-gpu-env.sh
BENCH_PIDS=/tmp/comfyrig-bench-logs/pids

say() { printf '\n=== [run_all %3ss] %s\n' "$((SECONDS - T0))" "$*"; }
left() { echo $((BUDGET - (SECONDS - T0) - SUMMARY_RESERVE)); }
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "${5:-}" >> "$STEPS"; }
min() { (( $1 < $2 )) && echo "$1" || echo "$2"; }

# --- 1. setup: a child bash, so its `set -e` ends only this step; then take its exports.
say "setup"
limit=$(min 180 "$(left)")
start=$SECONDS
rm -f "$COMFYRIG_GPU_ENV"
timeout -k 5 "$limit" bash gpulab/remote_setup.sh 2>&1 | tee "$OUT/setup.log"
rc=${PIPESTATUS[0]}
record setup "$rc" $((SECONDS - start)) "$limit"
setup_ok=0
if [[ $rc == 0 && -f "$COMFYRIG_GPU_ENV" ]]; then
    # shellcheck disable=SC1090
    source "$COMFYRIG_GPU_ENV"
    setup_ok=1
fi

# --- 2. tests marked gpu or comfyui (comfyui ones need COMFYUI_DIR/COMFYUI_PYTHON from setup).
say "pytest -m 'gpu or comfyui'"
if [[ "${PYTEST:-1}" == 0 ]]; then
    record pytest -1 0 0 "skipped (PYTEST=0)"
elif [[ ! -d tests ]]; then
    record pytest -1 0 0 "no tests/ directory in this checkout"
    echo "no tests/ directory" | tee "$OUT/pytest.log"
else
    limit=$(min "${PYTEST_LIMIT_S:-200}" "$(left)")
    start=$SECONDS
    # shellcheck disable=SC2086  # PYTEST_PATHS is a list on purpose
    # PYTEST_COMFYUI_DIR: the ComfyUI tree the tests start (e.g. /tmp/comfyui-0.24.0 from a bundle's extra tree).
    COMFYUI_DIR="${PYTEST_COMFYUI_DIR:-${COMFYUI_DIR:-}}" \
    timeout -k 10 "$limit" python3 -m pytest -m "${PYTEST_MARKERS:-gpu or comfyui}" -v -p no:cacheprovider -n 0 ${PYTEST_PATHS:-tests/} \
        --junitxml="$OUT/junit.xml" 2>&1 | tee "$OUT/pytest.log"
    rc=${PIPESTATUS[0]}
    note=""
    [[ $rc == 5 ]] && note="no test matched -m 'gpu or comfyui'" && rc=0
    [[ $setup_ok == 0 ]] && note="$note (setup failed: comfyui tests lack COMFYUI_DIR)"
    record pytest "$rc" $((SECONDS - start)) "$limit" "$note"
fi

# --- 3. benchmarks, each with what is left of the budget (shared fairly among those not yet run).
mapfile -t benches < <(find gpulab -maxdepth 1 -name "bench_*.py" | sort)
if [[ -n "${BENCHES:-}" ]]; then
    wanted=()
    for b in "${benches[@]}"; do
        [[ " $BENCHES " == *" $(basename "$b" .py) "* ]] && wanted+=("$b")
    done
    benches=("${wanted[@]}")
fi
for i in "${!benches[@]}"; do
    b="${benches[$i]}"
    name="$(basename "$b" .py)"
    say "$name"
    if [[ $setup_ok == 0 ]]; then
        record "$name" -1 0 0 "setup failed"
        continue
    fi
    remaining=$(left)
    limit=$(( remaining / (${#benches[@]} - i) ))
    if (( limit < 60 )); then
        record "$name" -1 0 0 "only ${remaining}s of budget left"
        continue
    fi
    start=$SECONDS
    # shellcheck disable=SC2086  # BENCH_ARGS is split on purpose (e.g. "--jobs 8")
    timeout -k 10 "$limit" python3 -m "gpulab.$name" --out "$OUT" --budget-s $((limit - 25)) ${BENCH_ARGS:-} > "$OUT/$name.log" 2>&1
    rc=$?
    tail -60 "$OUT/$name.log"
    record "$name" "$rc" $((SECONDS - start)) "$limit"
    # A bench killed by its timeout may leave ComfyUI servers (own sessions) behind.
    if [[ -f "$BENCH_PIDS" ]]; then
        while read -r pid; do
            [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null && echo "killed leftover ComfyUI $pid"
        done < "$BENCH_PIDS"
        : > "$BENCH_PIDS"
    fi
done

# --- 4. summary.md, then pack so that at most 8 files come back.
say "summary"
python3 -m gpulab.summarize --out "$OUT" --pack
say "done in $((SECONDS - T0)) s; results in $OUT"
