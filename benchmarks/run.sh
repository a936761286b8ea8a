#!/usr/bin/env bash
# run.sh — the whole benchmark, about 25 minutes, as root on the machine that runs the test Slurm
# (scripts/slurm.sh) with the project venv (make venv). `make bench` calls it.
#
#   benchmarks/run.sh               setup, then both spawners side by side on the real Slurm, issue 2's
#                                   registered-jobs run, the 1000-job scale run, and the report
#   benchmarks/run.sh --ours-only   issue 2's benchmark alone: our spawn-time phases, the registered-jobs
#                                   run and the scale run (no batchspawner); the report then uses the
#                                   batchspawner results already in results/ if there are any
#   benchmarks/run.sh --rerun-shared  only the shared-partition stage (N = 20 servers, registered 10/50)
#                                   and the registered N = 1 run, merged into the existing results
#                                   (for when a busy machine cut that stage short)
#   benchmarks/run.sh --rerun-phases  only the spawn-time phases of both spawners, merged into the
#                                   existing results (for when other work loaded the machine then)
#   benchmarks/run.sh --restart     only the hub-restart scenario (issue 12, item 6; restart.py, about
#                                   8 min): 10 queued spawns across a hub restart, ours with
#                                   init_spawners_timeout 10 and 1, and batchspawner; the full run
#                                   runs it too, after slurm_bench.py
#
# Setup (benchmarks/setup.sh, idempotent) builds the benchmark venv with batchspawner 1.3.0 and
# matplotlib, creates the accounts benchuser1..20, benchfail1/2 and benchstat with `useradd -m` when
# they are missing (they stay), and creates a run-time Slurm partition (deleted again at the end).
# Only jobs of those accounts are ever cancelled. Results: benchmarks/results/.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
export VENV=${VENV:-/opt/jupyterhub-hpc/venv}
export BENCH_VENV=${BENCH_VENV:-/opt/jupyterhub-hpc/bench-venv}
SHARED_PARTITION=${BENCH_SHARED_PARTITION:-benchshared}
SPAWNERS=ours,batchspawner
SCENARIOS=phases,idle,queued,failure,registered,shared
MERGE=
RESTART=yes
case "${1:-}" in
  "") ;;
  --ours-only) SPAWNERS=ours; SCENARIOS=phases,registered,shared; RESTART= ;;
  --rerun-shared) SPAWNERS=ours,batchspawner; SCENARIOS=registered,shared; MERGE=--merge; RESTART= ;;
  --rerun-phases) SPAWNERS=ours,batchspawner; SCENARIOS=phases; MERGE=--merge; RESTART= ;;
  --restart) SCENARIOS= ;;
  *) echo "usage: $0 [--ours-only | --rerun-shared | --rerun-phases | --restart]" >&2; exit 2 ;;
esac

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

cleanup() {
  "$VENV/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[1]); import bench_lib; bench_lib.cancel_bench_jobs()' \
    "$HERE" || true
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    scontrol show partition "$SHARED_PARTITION" >/dev/null 2>&1 || break
    scontrol delete "PartitionName=$SHARED_PARTITION" 2>/dev/null && break
    sleep 2  # jobs still completing in it
  done
}
trap cleanup EXIT

"$HERE/setup.sh"
started=$(date +%s)
cd "$HERE"
if [ -n "$SCENARIOS" ]; then
  log "real Slurm: $SPAWNERS ($SCENARIOS)"
  "$VENV/bin/python" slurm_bench.py --spawners "$SPAWNERS" --scenarios "$SCENARIOS" $MERGE
fi
if [ -n "$RESTART" ]; then
  log "hub restart with 10 queued spawns: ours (init_spawners_timeout 10, 1), batchspawner"
  "$VENV/bin/python" restart.py
fi
if [ -z "$MERGE" ] && [ -n "$SCENARIOS" ]; then
  log "scale run: 1000 jobs on the fake squeue"
  "$VENV/bin/python" scale.py
  log "readiness check: 20 launcher runs"
  "$VENV/bin/python" readiness.py --json results/readiness.json
fi
"$BENCH_VENV/bin/python" report.py >/dev/null
# report.py rewrites results/README.md: put the restart section back (from results/restart.json)
if [ -f results/restart.json ]; then "$VENV/bin/python" restart.py --section; fi
log "done in $(( ($(date +%s) - started) / 60 )) min: $HERE/results/README.md"
