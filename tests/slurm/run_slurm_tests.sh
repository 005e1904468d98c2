#!/usr/bin/env bash
# ditrun under a real Slurm: starts a one-host cluster (munged, slurmctld, slurmd from Debian's packages) in a
# temporary folder and runs, with the built-in tiny model on the CPU:
#   1. slurm/render-1node.sbatch as a 4-task job (sbatch --wait), srun --mpi=pmix; then again with mpirun inside
#      the allocation, which must skip every prompt (outputs exist); outputs and reports checked
#   2. slurm/render-array.sbatch as a 2-task job array: every prompt rendered exactly once
#   3. the time-limit path: SIGTERM to the batch script (as --signal=B:TERM@120 sends it) requeues the job, and the
#      rerun renders only what the killed run had not finished
#   4. slurm/sweep.py at 1, 2 and 4 tasks: CSV and PNG
# Exit 77 (ctest: skipped) with the reason when Slurm cannot start on this machine; everything it started is
# stopped and its folder removed on every exit.
#   bash tests/slurm/run_slurm_tests.sh build/ditrun [source dir]
set -euo pipefail

ditrun=$(realpath "${1:?usage: run_slurm_tests.sh DITRUN [SOURCE_DIR]}")
src=$(realpath "${2:-$(dirname "$0")/../..}")
# shellcheck source=tests/slurm/cluster.sh
source "$src/tests/slurm/cluster.sh"

work=$(mktemp -d /tmp/ditrun-slurm.XXXXXX)
cleanup() {
  slurm_cluster_stop "$work/cluster" || true
  rm -rf "$work"
}
trap cleanup EXIT

status=0
slurm_cluster_start "$work/cluster" || status=$?
((status == 0)) || exit "$status"

# Jobs inherit this environment (sbatch --export=ALL). Open MPI as on the other tests: shared memory only, and
# root allowed (CI runs as root).
export OMPI_MCA_btl=self,vader OMPI_MCA_pml=ob1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export DITRUN=$ditrun OMP_NUM_THREADS=1
# The templates ask for 8 GPUs per node and 8 cores per rank; this cluster has no GPUs and few cores.
cpu_only=(--gpus-per-node=0 --cpus-per-task=1 --time=10)

fail() {
  echo "FAILED: $*" >&2
  local f
  for f in "$work"/run/*.out; do
    [ -f "$f" ] && { echo "--- $f" >&2; grep -v ' step \[' "$f" | tail -n 20 >&2; }
  done
  echo "--- slurmctld.log" >&2
  tail -n 15 "$work/cluster/log/slurmctld.log" >&2 || true
  exit 1
}
# check.py-style assertions on JSON, in Python (the standard library only).
pycheck() { python3 - "$@" || fail "${check_name:-check}"; }

mkdir -p "$work/run" && cd "$work/run"
cat >tiny.toml <<EOF
# 4 ranks: 2 replicas x cfg 2, as examples/tiny.toml, smaller and fewer steps.
[parallel]
cfg = 2
[sampling]
steps = 3
frames = 5
width = 64
height = 48
[output]
dir = "out/tiny"
[prompts]
manifest = "$src/examples/prompts.jsonl"
embeddings = "$src/examples/tiny_embeddings.h5"
EOF
ids=$(python3 -c 'import json,sys; print(" ".join(json.loads(l)["id"] for l in open(sys.argv[1]) if l.strip()))' \
  "$src/examples/prompts.jsonl")

# ---- 1. one node, 4 tasks, srun --mpi=pmix; then mpirun inside the allocation.
SECONDS=0
job=$(sbatch --parsable --wait --ntasks-per-node=4 "${cpu_only[@]}" "$src/slurm/render-1node.sbatch" tiny.toml) ||
  fail "render-1node.sbatch (srun) job ended with an error"
for id in $ids; do
  for f in "$id.latents.h5" "$id.mp4"; do [ -f "out/tiny/$f" ] || fail "no out/tiny/$f"; done
done
check_name="report of the srun job" pycheck "reports/$job.json" "$job" $ids <<'EOF'
import json, sys
report, job, ids = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3:]
assert report["status"] == "ok", report["status"]
assert report["world"]["ranks"] == 4
launch = report["launch"]
assert launch["launcher"] == "srun" and launch["local_rank_from"] == "SLURM_LOCALID", launch
assert launch["slurm"]["SLURM_JOB_ID"] == job, launch["slurm"]
assert [r["local_rank"] for r in launch["ranks"]] == [0, 1, 2, 3], launch["ranks"]
assert not launch["warnings"], launch["warnings"]
done = sorted(p["id"] for p in report["prompts"] if p["status"] == "done")
assert done == sorted(ids), done
EOF
echo "ok: render-1node.sbatch, 4 tasks by srun --mpi=pmix, job $job (${SECONDS}s)"

SECONDS=0
job=$(LAUNCHER=mpirun sbatch --parsable --wait --ntasks-per-node=4 "${cpu_only[@]}" \
  "$src/slurm/render-1node.sbatch" tiny.toml) || fail "render-1node.sbatch (mpirun) job ended with an error"
check_name="report of the mpirun job" pycheck "reports/$job.json" <<'EOF'
import json, sys
report = json.load(open(sys.argv[1]))
launch = report["launch"]
assert launch["launcher"] == "mpirun" and launch["local_rank_from"] == "OMPI_COMM_WORLD_LOCAL_RANK", launch
assert report["world"]["ranks"] == 4
statuses = {p["status"] for p in report["prompts"]}
assert statuses == {"skipped (output exists)"}, statuses  # the srun job rendered them all
EOF
echo "ok: render-1node.sbatch, 4 ranks by mpirun inside the allocation, every prompt skipped, job $job (${SECONDS}s)"

# ---- 2. a job array of 2 tasks over the manifest: each prompt exactly once.
SECONDS=0
sed 's|out/tiny|out/array|' tiny.toml >array.toml
job=$(sbatch --parsable --wait --array=0-1 --ntasks-per-node=2 "${cpu_only[@]}" \
  "$src/slurm/render-array.sbatch" array.toml) || fail "render-array.sbatch job ended with an error"
check_name="array reports" pycheck "$job" $ids <<'EOF'
import collections, json, pathlib, sys
job, ids = sys.argv[1], sys.argv[2:]
reports = sorted(pathlib.Path("reports").glob(f"{job}_*.json"))
assert [r.name for r in reports] == [f"{job}_0.json", f"{job}_1.json"], reports
count = collections.Counter()
for r in reports:
    report = json.loads(r.read_text())
    assert report["prompt_slice"]["count"] == 2, report["prompt_slice"]
    count.update(p["id"] for p in report["prompts"] if p["status"] == "done")
assert sorted(count) == sorted(ids) and set(count.values()) == {1}, count
outputs = sorted(p.name for p in pathlib.Path("out/array").iterdir())
assert outputs == sorted([f"{i}.latents.h5" for i in ids] + [f"{i}.mp4" for i in ids]), outputs  # no .part left
EOF
echo "ok: render-array.sbatch, 2 array tasks, every prompt rendered exactly once, job $job (${SECONDS}s)"

# ---- 3. near the time limit: SIGTERM to the batch script requeues the job; the rerun finishes the rest.
SECONDS=0
sed -e 's|out/tiny|out/requeue|' -e 's|^steps = 3|steps = 40|' -e 's|^width = 64|width = 128|' \
  -e 's|^height = 48|height = 96|' tiny.toml >requeue.toml
job=$(sbatch --parsable --ntasks-per-node=4 "${cpu_only[@]}" "$src/slurm/render-1node.sbatch" requeue.toml)
until compgen -G "out/requeue/*.mp4" >/dev/null; do  # a prompt complete (its video is written last)
  ((SECONDS < 120)) || fail "the requeue job wrote no output in 120 s"
  sleep 0.2
done
# What --signal=B:TERM@120 does at the time limit, now.
scancel --batch --signal=TERM "$job"
while [ -n "$(squeue -h -j "$job" -o %i 2>/dev/null)" ]; do
  ((SECONDS < 240)) || fail "the requeued job $job did not finish in 240 s"
  sleep 1
done
grep -q "requeueing job $job" "ditrun-$job.out" || fail "render-1node.sbatch did not requeue on SIGTERM"
check_name="report of the requeued run" pycheck "reports/$job-r1.json" $ids <<'EOF'
import json, pathlib, sys
report, ids = json.load(open(sys.argv[1])), sys.argv[2:]
status = {p["id"]: p["status"] for p in report["prompts"]}
assert sorted(status) == sorted(ids), status
assert "skipped (output exists)" in status.values() and "done" in status.values(), status
outputs = sorted(p.name for p in pathlib.Path("out/requeue").iterdir())
assert outputs == sorted([f"{i}.latents.h5" for i in ids] + [f"{i}.mp4" for i in ids]), outputs
EOF
[ ! -e "reports/$job.json" ] || fail "the killed run wrote a report"
echo "ok: SIGTERM to the batch script requeued job $job; the rerun skipped finished prompts (${SECONDS}s)"

# ---- 4. the sweep driver: 1, 2, 4 tasks, CSV and PNG.
SECONDS=0
python3 "$src/slurm/sweep.py" tiny.toml --tasks 1,2,4 --ditrun "$ditrun" --out sweep --poll 1 --timeout 300 \
  --sbatch-arg=--cpus-per-task=1 --sbatch-arg=--time=10 || fail "slurm/sweep.py failed"
check_name="sweep CSV and PNG" pycheck <<'EOF'
import csv
rows = list(csv.DictReader(open("sweep/sweep.csv")))
assert [int(r["ranks"]) for r in rows] == [1, 2, 4], rows
for r in rows:
    assert r["state"] == "COMPLETED" and int(r["prompts_done"]) == 4 and float(r["latency_s"]) > 0, r
    assert int(r["ulysses"]) == int(r["ranks"]) and float(r["efficiency"]) > 0, r
assert open("sweep/sweep.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
EOF
echo "ok: slurm/sweep.py at 1, 2, 4 tasks: sweep/sweep.csv and sweep/sweep.png (${SECONDS}s)"
