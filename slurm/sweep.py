#!/usr/bin/env python3
"""Scaling sweep: the same ditrun job at 1, 2, 4 ... N nodes (or tasks) and the layouts you list, on Slurm.

    python3 slurm/sweep.py JOB.toml --nodes 1,2,4,8 --gpus-per-node 8 --layout ulysses=8,ring=* --layout cfg=2,ulysses=*
    python3 slurm/sweep.py JOB.toml --tasks 1,2,4 --launcher mpirun          # CPU ranks, no GPUs
    python3 slurm/sweep.py --collect sweep-20261122-0412                     # CSV and PNG again from the reports

For every (count, layout) point it writes a job file (the given one with its [parallel] section replaced by the
layout and its output.dir moved into the point's folder, so that no point skips prompts another one rendered), checks
the layout with `ditrun plan` (points that do not fit are listed and skipped), submits one sbatch job per point,
waits for them (squeue), reads every report.json, and writes

    OUT/sweep.csv   one row per point: layout, ranks, nodes, Slurm job id and state, latency (mean seconds per video),
                    median step seconds, denoise and total seconds, videos per second, speedup and efficiency
                    against the layout's smallest count, communication times when sequence-parallel
    OUT/sweep.png   latency and efficiency against GPU (or rank) count, each layout with its ideal line (gnuplot)

Layouts: comma-separated key=value with keys replicas, cfg, ring, ulysses, pipefusion; one value may be `*`,
meaning "the ranks left over" (e.g. ulysses=8,ring=* on 32 GPUs is ring 4). replicas defaults to 1 (one video
over all ranks: a latency sweep); replicas=* gives a throughput sweep. The default layout is ulysses=* with
--tasks and ulysses=<gpus per node>,ring=* with --nodes.

Only the Python standard library (3.11+, for tomllib) and gnuplot are needed; Slurm's sbatch, squeue and scontrol
must be on PATH.
"""
import argparse
import csv
import datetime
import json
import math
import os
import pathlib
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import tomllib

LAYOUT_KEYS = ("replicas", "cfg", "pipefusion", "ring", "ulysses")


def fail(message):
    print(f"sweep: error: {message}", file=sys.stderr)
    sys.exit(2)


def parse_counts(text, option):
    try:
        counts = [int(c) for c in text.split(",") if c.strip()]
    except ValueError:
        fail(f"{option} takes comma-separated positive integers, got {text!r}")
    if not counts or any(c < 1 for c in counts):
        fail(f"{option} takes comma-separated positive integers, got {text!r}")
    return sorted(set(counts))


def parse_layout(spec):
    """'cfg=2,ulysses=*' -> {'cfg': 2, 'ulysses': '*'}."""
    layout = {}
    for item in spec.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep or key not in LAYOUT_KEYS:
            fail(f"layout {spec!r}: items are key=value with key one of {', '.join(LAYOUT_KEYS)}")
        if key in layout:
            fail(f"layout {spec!r}: {key} given twice")
        if value == "*":
            layout[key] = "*"
        else:
            try:
                layout[key] = int(value)
            except ValueError:
                fail(f"layout {spec!r}: {key} must be an integer or *")
            if layout[key] < 1:
                fail(f"layout {spec!r}: {key} must be at least 1")
    if list(layout.values()).count("*") > 1:
        fail(f"layout {spec!r}: at most one value may be *")
    return layout


def resolve_layout(layout, ranks):
    """The [parallel] values for `ranks` ranks, or None when the layout does not fit."""
    values = {**{key: 1 for key in LAYOUT_KEYS}, **layout}
    fixed = math.prod(v for v in values.values() if v != "*")
    if ranks % fixed:
        return None
    for key, value in values.items():
        if value == "*":
            values[key] = ranks // fixed
    return values if math.prod(values.values()) == ranks else None


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} as TOML")


def point_job(job, job_dir, parallel, out_dir):
    """The job file of one point: paths made absolute, the layout and output folder replaced."""
    job = json.loads(json.dumps(job))  # a deep copy (the job holds only TOML/JSON types here)
    model = job.setdefault("model", {})
    name = model.get("name", "tiny")
    if name != "tiny" and not name.startswith("random:"):
        model["name"] = str((job_dir / name).resolve())
    prompts = job.setdefault("prompts", {})
    for key in ("manifest", "embeddings"):
        if key in prompts:
            prompts[key] = str((job_dir / prompts[key]).resolve())
    overlap = {k: v for k, v in job.get("parallel", {}).items() if k.endswith("_overlap")}
    job["parallel"] = {**parallel, **overlap}
    job.setdefault("output", {})["dir"] = str(out_dir)
    lines = ["# Written by slurm/sweep.py for one point of a sweep."]
    for section, table in job.items():
        lines.append(f"\n[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def job_state(job_id):
    """Slurm's state of a job: from squeue while queued or running, else scontrol (kept MinJobAge seconds)."""
    out = run(["squeue", "-h", "-j", job_id, "-o", "%T"]).stdout.strip()
    if out:
        return out.splitlines()[0]
    out = run(["scontrol", "show", "job", "-o", job_id]).stdout
    for field in out.split():
        if field.startswith("JobState="):
            return field.split("=", 1)[1]
    return "UNKNOWN"


def wait_for(job_ids, poll, timeout):
    deadline = time.monotonic() + timeout
    pending = set(job_ids)
    while pending:
        queued = run(["squeue", "-h", "-o", "%i", "-j", ",".join(sorted(pending))])
        still = set(queued.stdout.split()) & pending if queued.returncode == 0 else set()
        for job_id in pending - still:
            print(f"sweep: job {job_id} ended: {job_state(job_id)}", flush=True)
        pending = still
        if pending and time.monotonic() > deadline:
            print(f"sweep: timed out waiting for {', '.join(sorted(pending))}; cancelling them", file=sys.stderr)
            run(["scancel", *sorted(pending)])
            return False
        if pending:
            time.sleep(poll)
    return True


def submit(args, point, sweep_dir):
    """Writes the point's job file and batch script, submits it, and returns the job id."""
    folder = sweep_dir / point["name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.toml").write_text(point["job_text"])
    if args.launcher == "srun":
        launch = ["srun", f"--mpi={args.srun_mpi}", "--kill-on-bad-exit=1"]
    else:
        launch = ["mpirun", "--bind-to", "none"]  # the nodes and rank count come from the allocation
    command = [*launch, args.ditrun, "run", str(folder / "job.toml"), "--report", str(folder / "report.json")]
    (folder / "run.sbatch").write_text(
        "#!/bin/bash\n# Written by slurm/sweep.py: one point of a scaling sweep.\nset -euo pipefail\n"
        f"{shlex.join(command)}\n")
    sbatch = ["sbatch", "--parsable", f"--job-name=sweep-{point['name']}", f"--output={folder}/slurm-%j.out",
              f"--chdir={folder}"]
    if args.nodes:
        sbatch += [f"--nodes={point['nodes']}", f"--ntasks-per-node={args.gpus_per_node}"]
        if args.gpus_per_node_request:
            sbatch += [f"--gpus-per-node={args.gpus_per_node}"]
    else:
        sbatch += [f"--ntasks={point['ranks']}"]
    sbatch += args.sbatch_arg + [str(folder / "run.sbatch")]
    result = run(sbatch)
    if result.returncode != 0:
        fail(f"sbatch failed for {point['name']}: {result.stderr.strip()}")
    job_id = result.stdout.strip().split(";")[0]
    print(f"sweep: {point['name']}: {point['ranks']} ranks, {point['layout_text']} -> job {job_id}", flush=True)
    return job_id


def plan_check(args, point, sweep_dir):
    """Runs `ditrun plan` on the point's job file; returns its error line when the layout cannot work, else ''."""
    ditrun = shutil.which(args.ditrun) or (args.ditrun if os.access(args.ditrun, os.X_OK) else None)
    if not ditrun:
        return ""  # not runnable here (a login node without the build): the job itself will say
    folder = sweep_dir / point["name"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "job.toml").write_text(point["job_text"])
    per_node = args.gpus_per_node if args.nodes else point["ranks"]
    result = run([ditrun, "plan", str(folder / "job.toml"), "--gpus", str(point["ranks"]),
                  "--gpus-per-node", str(per_node)])
    return result.stderr.strip().splitlines()[-1] if result.returncode == 2 else ""


def summarize(point):
    """One CSV row from a point's report.json (missing values stay empty)."""
    row = {k: point.get(k, "") for k in ("layout", "ranks", "nodes", "job_id", "state")}
    row.update({k: point["parallel"].get(k, 1) for k in LAYOUT_KEYS})
    report_path = pathlib.Path(point["report"])
    row["report"] = str(report_path)
    if not report_path.exists():
        return row
    report = json.loads(report_path.read_text())
    done = [p for p in report.get("prompts", []) if p.get("status") == "done"]
    stages = {s["stage"]: s["seconds"] for s in report.get("stages", [])}
    steps = [s for p in done for s in p.get("step_seconds", [])]
    row["backend"] = report.get("backend", {}).get("compute", "")
    row["device"] = report.get("backend", {}).get("device", "")
    row["prompts_done"] = len(done)
    if done:
        row["latency_s"] = statistics.mean(p["seconds"] for p in done)
        row["videos_per_s"] = len(done) / stages["denoise"] if stages.get("denoise") else ""
    if steps:
        row["step_s_median"] = statistics.median(steps)
    row["denoise_s"] = stages.get("denoise", "")
    row["total_s"] = stages.get("total", "")
    sp = [p["sequence_parallel"] for p in done if "sequence_parallel" in p]
    if sp:
        row["comm_ms"] = statistics.mean(s["comm_ms"] for s in sp)
        row["comm_exposed_ms"] = statistics.mean(s["comm_exposed_ms"] for s in sp)
    return row


COLUMNS = ["layout", "ranks", "nodes", "job_id", "state", *LAYOUT_KEYS, "backend", "device", "prompts_done",
           "latency_s", "step_s_median", "denoise_s", "total_s", "videos_per_s", "speedup", "efficiency", "comm_ms",
           "comm_exposed_ms", "report"]


def add_scaling(rows):
    """Speedup and efficiency of each layout against its own smallest rank count that has a latency."""
    for layout in dict.fromkeys(r["layout"] for r in rows):
        measured = sorted((r for r in rows if r["layout"] == layout and r.get("latency_s") not in (None, "")),
                          key=lambda r: r["ranks"])
        if not measured:
            continue
        base = measured[0]
        for r in measured:
            r["speedup"] = base["latency_s"] / r["latency_s"]
            r["efficiency"] = r["speedup"] / (r["ranks"] / base["ranks"])
            r["ideal_latency_s"] = base["latency_s"] * base["ranks"] / r["ranks"]


def write_csv(rows, path):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()})


def plot(rows, sweep_dir, unit, title):
    """sweep.png with gnuplot: latency (log-log) and efficiency against the count, ideal lines dashed."""
    gnuplot = shutil.which("gnuplot")
    if not gnuplot:
        print("sweep: gnuplot not found (Debian: apt-get install gnuplot-nox); no PNG written", file=sys.stderr)
        return False
    data_dir = sweep_dir / "plot"
    data_dir.mkdir(exist_ok=True)
    layouts = [l for l in dict.fromkeys(r["layout"] for r in rows)
               if any(r["layout"] == l and r.get("speedup") not in (None, "") for r in rows)]
    if not layouts:
        print("sweep: no point has a latency; no PNG written", file=sys.stderr)
        return False
    latency, efficiency = [], []
    for i, layout in enumerate(layouts):
        data = data_dir / f"layout{i}.dat"
        points = sorted((r for r in rows if r["layout"] == layout and r.get("speedup") not in (None, "")),
                        key=lambda r: r["ranks"])
        data.write_text("# ranks latency_s ideal_latency_s efficiency\n" + "".join(
            f"{r['ranks']} {r['latency_s']:.6g} {r['ideal_latency_s']:.6g} {r['efficiency']:.6g}\n" for r in points))
        name = layout.replace("'", "")
        latency += [f"'{data}' using 1:2 with linespoints lw 2 pt 7 lc {i + 1} title '{name}'",
                    f"'{data}' using 1:3 with lines dt 2 lc {i + 1} title 'ideal ({name})'"]
        efficiency.append(f"'{data}' using 1:4 with linespoints lw 2 pt 7 lc {i + 1} title '{name}'")
    counts = sorted({r["ranks"] for r in rows})
    top = max([1.2] + [1.1 * r["efficiency"] for r in rows if r.get("efficiency") not in (None, "")])
    xtics = ", ".join(str(c) for c in counts)
    terminal = "pngcairo size 1400,560 font ',11'"
    if run([gnuplot, "-e", "set terminal pngcairo"]).returncode != 0:
        terminal = "png size 1400,560"
    script = f"""set terminal {terminal} noenhanced
set output '{sweep_dir / "sweep.png"}'
set multiplot layout 1,2 title '{title.replace("'", "")}'
set grid
set key top right
set logscale x 2
set logscale y 2
set xtics ({xtics})
set xlabel '{unit}'
set ylabel 'seconds per video (mean)'
set title 'latency'
plot {", ".join(latency)}
unset logscale y
set yrange [0:{top:.3g}]
set ylabel 'efficiency (speedup / {unit} ratio)'
set title 'efficiency against each layout''s smallest count'
set key bottom left
plot {", ".join(efficiency)}, 1 with lines dt 2 lc rgb 'black' title 'ideal'
unset multiplot
"""
    (data_dir / "sweep.gp").write_text(script)
    result = run([gnuplot, str(data_dir / "sweep.gp")])
    if result.returncode != 0:
        print(f"sweep: gnuplot failed: {result.stderr.strip()}", file=sys.stderr)
        return False
    return True


def collect(sweep_dir):
    """Rows from a sweep folder's sweep.json; writes sweep.csv and sweep.png. Returns the rows."""
    meta = json.loads((sweep_dir / "sweep.json").read_text())
    rows = [summarize(p) for p in meta["points"] if not p.get("skipped")]
    add_scaling(rows)
    write_csv(rows, sweep_dir / "sweep.csv")
    plotted = plot(rows, sweep_dir, meta["unit"], meta["title"])
    print(f"sweep: {sweep_dir / 'sweep.csv'} ({len(rows)} points)" +
          (f", {sweep_dir / 'sweep.png'}" if plotted else ""))
    for r in rows:
        latency = f"{r['latency_s']:.3f} s" if r.get("latency_s") not in (None, "") else "no latency"
        eff = f", efficiency {r['efficiency']:.2f}" if r.get("efficiency") not in (None, "") else ""
        print(f"  {r['layout']:24} {r['ranks']:4} ranks  {r.get('state', ''):10} {latency}{eff}")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("job", nargs="?", help="ditrun job file (TOML)")
    counts = parser.add_mutually_exclusive_group()
    counts.add_argument("--nodes", help="node counts, e.g. 1,2,4,8 (each node runs --gpus-per-node ranks)")
    counts.add_argument("--tasks", help="rank counts, e.g. 1,2,4 (sbatch --ntasks; CPU runs or one GPU per task)")
    parser.add_argument("--gpus-per-node", type=int, default=8, help="ranks (GPUs) per node with --nodes [8]")
    parser.add_argument("--no-gpu-request", dest="gpus_per_node_request", action="store_false",
                        help="with --nodes, do not pass --gpus-per-node to sbatch (clusters without GPU gres)")
    parser.add_argument("--layout", action="append", default=[], help="a layout to sweep (repeatable), see below")
    parser.add_argument("--launcher", choices=("srun", "mpirun"), default="srun", help="how ranks start [srun]")
    parser.add_argument("--srun-mpi", default="pmix", help="srun --mpi plugin [pmix]")
    parser.add_argument("--ditrun", default="build/ditrun", help="the ditrun binary [build/ditrun]")
    parser.add_argument("--out", help="sweep folder [sweep-<date>-<time>]")
    parser.add_argument("--sbatch-arg", action="append", default=[],
                        help="extra sbatch option, e.g. --sbatch-arg=--partition=gpu (repeatable)")
    parser.add_argument("--sequential", action="store_true",
                        help="one job at a time (points sharing nodes would disturb each other's timings)")
    parser.add_argument("--poll", type=float, default=5.0, help="seconds between squeue polls [5]")
    parser.add_argument("--timeout", type=float, default=24 * 3600, help="seconds to wait for all jobs [86400]")
    parser.add_argument("--collect", metavar="DIR", help="only re-read DIR's reports and write its CSV and PNG")
    args = parser.parse_args()

    if args.collect:
        collect(pathlib.Path(args.collect))
        return 0
    if not args.job:
        fail("a job file is required (or --collect DIR)")
    if not (args.nodes or args.tasks):
        fail("give --nodes or --tasks")
    if args.gpus_per_node < 1:
        fail("--gpus-per-node must be at least 1")
    job_path = pathlib.Path(args.job)
    try:
        job = tomllib.loads(job_path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        fail(f"cannot read {job_path}: {e}")
    for tool in ("sbatch", "squeue", "scontrol"):
        if not shutil.which(tool):
            fail(f"{tool} not found: run the sweep where Slurm's commands are")
    args.ditrun = str(pathlib.Path(args.ditrun).resolve()) if "/" in args.ditrun else args.ditrun

    numbers = parse_counts(args.nodes or args.tasks, "--nodes" if args.nodes else "--tasks")
    specs = args.layout or ([f"ulysses={args.gpus_per_node},ring=*"] if args.nodes else ["ulysses=*"])
    layouts = [(spec, parse_layout(spec)) for spec in specs]
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    sweep_dir = pathlib.Path(args.out or f"sweep-{stamp}").resolve()
    sweep_dir.mkdir(parents=True, exist_ok=True)
    unit = "GPUs" if args.nodes else "ranks"

    points = []
    for li, (spec, layout) in enumerate(layouts):
        for n in numbers:
            ranks = n * args.gpus_per_node if args.nodes else n
            name = f"l{li}-{ranks:04d}"
            point = {"name": name, "layout": spec, "ranks": ranks, "nodes": n if args.nodes else "",
                     "report": str(sweep_dir / name / "report.json")}
            parallel = resolve_layout(layout, ranks)
            if parallel is None:
                point.update(skipped=f"layout {spec} does not fit {ranks} ranks", parallel={})
                print(f"sweep: skipping {ranks} ranks, {spec}: does not fit", flush=True)
                points.append(point)
                continue
            point["parallel"] = parallel
            point["layout_text"] = ", ".join(f"{k} {v}" for k, v in parallel.items())
            point["job_text"] = point_job(job, job_path.parent, parallel, sweep_dir / name / "out")
            problem = plan_check(args, point, sweep_dir)
            if problem:
                point["skipped"] = problem
                print(f"sweep: skipping {ranks} ranks, {spec}: {problem}", flush=True)
            points.append(point)

    todo = [p for p in points if not p.get("skipped")]
    if not todo:
        fail("no point of the sweep fits its layout")
    meta = {"job": str(job_path.resolve()), "unit": unit, "title": f"ditrun scaling: {job_path.name}",
            "launcher": args.launcher, "points": points}
    ok = True
    if args.sequential:
        for p in todo:
            p["job_id"] = submit(args, p, sweep_dir)
            ok = wait_for([p["job_id"]], args.poll, args.timeout) and ok
            p["state"] = job_state(p["job_id"])
    else:
        for p in todo:
            p["job_id"] = submit(args, p, sweep_dir)
        (sweep_dir / "sweep.json").write_text(json.dumps(meta, indent=1))
        ok = wait_for([p["job_id"] for p in todo], args.poll, args.timeout)
        for p in todo:
            p["state"] = job_state(p["job_id"])
    for p in points:
        p.pop("job_text", None)
    (sweep_dir / "sweep.json").write_text(json.dumps(meta, indent=1))
    rows = collect(sweep_dir)
    missing = [r for r in rows if r.get("latency_s") in (None, "")]
    for r in missing:
        print(f"sweep: {r['layout']} at {r['ranks']} ranks has no result (job {r['job_id']}, {r['state']}): see "
              f"{pathlib.Path(r['report']).parent}/slurm-{r['job_id']}.out", file=sys.stderr)
    return 0 if ok and not missing else 1


if __name__ == "__main__":
    sys.exit(main())
