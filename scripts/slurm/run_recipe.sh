#!/usr/bin/env bash
# Run the SLURM launch recipe end to end on THIS machine:
#   1. scripts/slurm/setup_local.sh  (install/start a single-node test SLURM),
#      unless this machine has a SLURM of its own: where sbatch exists and
#      slurm.conf ($SLURM_CONF or /etc/slurm/slurm.conf) is not the one
#      setup_local.sh wrote, the job goes to that SLURM as it is
#   2. sbatch scripts/slurm/fer_bench.sbatch from the repository root
#   3. wait for the job, print its output file and exit state, and exit with
#      the job's exit status (128+signal if it was killed by a signal, 1 if it
#      ended FAILED/TIMEOUT/CANCELLED/... without an exit code).
#
# Usage:  scripts/slurm/run_recipe.sh [sbatch options...]
#   scripts/slurm/run_recipe.sh                       # 2 tasks, -k ddp, CPU
#   scripts/slurm/run_recipe.sh --ntasks=1 --output=/tmp/fer-bench-%j.out
#   FER_BENCH_PYTEST_ARGS='-k "ddp and resnet" --fer-devices cpu' scripts/slurm/run_recipe.sh
#
# sbatch options are passed through (they override the #SBATCH lines); the
# FER_BENCH_* variables reach the job through the environment (see
# fer_bench.sbatch).  FER_BENCH_PYTHON defaults to the repository's
# .venv/bin/python (or $FER_BENCH_VENV/bin/python) when that exists.
#
# Testing the recipe WITHOUT the benchmark suite: set FER_BENCH_SBATCH_COMMAND
# to a shell command; every task runs it instead of pytest, e.g.
#   FER_BENCH_SBATCH_COMMAND='echo $SLURM_PROCID/$SLURM_NTASKS $MASTER_ADDR:$MASTER_PORT' \
#       scripts/slurm/run_recipe.sh --output=/tmp/fer-bench-%j.out
#
# Other environment: FER_BENCH_JOB_TIMEOUT  seconds to wait for the job
# before cancelling it (default 1500, a bit over the job's --time).
set -euo pipefail

t0=$(date +%s%N)
secs() { awk -v a="$1" -v b="$(date +%s%N)" 'BEGIN{printf "%.1f", (b-a)/1e9}'; }

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

conf=${SLURM_CONF:-/etc/slurm/slurm.conf}
if command -v sbatch >/dev/null 2>&1 && ! grep -qs "^# Written by scripts/slurm/setup_local.sh" "$conf"; then
    echo "run_recipe: submitting to this machine's own SLURM ($(command -v sbatch)); setup_local.sh is not run"
else
    "$HERE/setup_local.sh"
fi
setup_s=$(secs "$t0")

VENV=${FER_BENCH_VENV:-$ROOT/.venv}
if [[ -z ${FER_BENCH_PYTHON:-} && -x $VENV/bin/python ]]; then
    export FER_BENCH_PYTHON=$VENV/bin/python
fi

cd "$ROOT"
t1=$(date +%s%N)
jobid=$(sbatch --parsable "$@" "$HERE/fer_bench.sbatch") || {
    echo "run_recipe: FAILED: sbatch $* $HERE/fer_bench.sbatch" >&2; exit 1; }
jobid=${jobid%%;*}   # --parsable prints "id" or "id;cluster"
echo "run_recipe: submitted job $jobid"

# Cancel the job if we are interrupted while waiting.
trap 'echo "run_recipe: interrupted, cancelling job $jobid" >&2; scancel "$jobid" 2>/dev/null; exit 130' INT TERM

field() { grep -o "\b$1=[^ ]*" <<<"$info" | head -n1 | cut -d= -f2-; }
deadline=$((SECONDS + ${FER_BENCH_JOB_TIMEOUT:-1500}))
state="" info=""
while :; do
    # No slurmdbd here, so no sacct: ask slurmctld (jobs stay visible for
    # MinJobAge=600 s after they end).
    info=$(scontrol show job -o "$jobid" 2>/dev/null) || info=""
    state=$(field JobState)
    case $state in
        COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED|BOOT_FAIL|DEADLINE) break ;;
        "") echo "run_recipe: FAILED: job $jobid vanished from 'scontrol show job'" >&2; exit 1 ;;
    esac
    if (( SECONDS > deadline )); then
        echo "run_recipe: FAILED: job $jobid still $state after ${FER_BENCH_JOB_TIMEOUT:-1500}s, cancelling" >&2
        scancel "$jobid" || true
        exit 124
    fi
    sleep 1
done
trap - INT TERM
job_s=$(secs "$t1")

out=$(field StdOut)
exit_code=$(field ExitCode)          # "status:signal"
status=${exit_code%%:*} signal=${exit_code##*:}
if (( signal != 0 )); then rc=$((128 + signal))
elif (( status != 0 )); then rc=$status
elif [[ $state != COMPLETED ]]; then rc=1
else rc=0
fi

echo "---- job $jobid output: $out ----"
if [[ -r $out ]]; then cat "$out"; else echo "(output file not readable)"; fi
echo "---- end of output ----"
echo "run_recipe: job $jobid $state ExitCode=$exit_code reason=$(field Reason)"
echo "run_recipe: setup ${setup_s} s, job ${job_s} s (submit to end), total $(secs "$t0") s; exit $rc"
exit "$rc"
