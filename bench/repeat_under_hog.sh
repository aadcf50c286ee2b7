#!/bin/bash
# Run a pytest selection N times in a row while two busy loops (one per core) compete for the CPU.
#   bench/repeat_under_hog.sh [N] [PYTEST ARGS...]
# Default: 20 runs of the demo's interrupt test (SIGINT, and launch's SIGINT/SIGTERM/SIGKILL
# escalation), as issue 15 asks. Prints one line per run and the tally; exit 1 if any run failed.
cd "$(dirname "$0")/.." || exit 2
N=${1:-20}
shift
ARGS=("$@")
if [ ${#ARGS[@]} -eq 0 ]; then
  ARGS=(test/test_demo.py -k "test_interrupted_or_killed_demo_leaves_no_child and (extra0 or extra3)")
fi
python3 -c "while True: pass" & H1=$!
python3 -c "while True: pass" & H2=$!
trap 'kill $H1 $H2 2>/dev/null' EXIT
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); two busy loops running"
pass=0; fail=0
for i in $(seq 1 "$N"); do
  t0=$(date +%s)
  if out=$(timeout 600 .venv/bin/python -m pytest -q -p no:cacheprovider "${ARGS[@]}" 2>&1); then
    pass=$((pass + 1)); r=ok
  else
    fail=$((fail + 1)); r=FAIL
  fi
  echo "run $i: $r ($(( $(date +%s) - t0 )) s) $(echo "$out" | tail -1)"
done
echo "passed $pass / $N runs, failed $fail; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
[ "$fail" -eq 0 ]
