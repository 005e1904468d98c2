#!/usr/bin/env bash
# Samples the GPU's SM clock, power draw and clock-event reasons (nvidia-smi, every 100 ms) while a command runs,
# and summarises the samples taken while the GPU was busy. Shows whether a benchmark ran at full clock or was held
# back by the power cap (reason bit 0x4, SW power cap).
#   bash bench/run_clock_trace.sh OUT_PREFIX COMMAND [ARGS...]
# Writes OUT_PREFIX.csv (raw samples) and OUT_PREFIX.json (summary with the device and the date); prints the summary.
set -u
prefix=${1:?output prefix} && shift
[ $# -gt 0 ] || { echo "run_clock_trace.sh: no command given" >&2; exit 2; }
command -v nvidia-smi > /dev/null || { echo "run_clock_trace.sh: nvidia-smi not found" >&2; exit 2; }
nvidia-smi --query-gpu=timestamp,utilization.gpu,clocks.sm,clocks.max.sm,power.draw,power.limit,clocks_event_reasons.active \
  --format=csv,noheader,nounits -lms 100 > "$prefix.csv" &
sampler=$!
"$@"
rc=$?
kill "$sampler" 2> /dev/null
wait "$sampler" 2> /dev/null
python3 - "$prefix" "$rc" "$*" <<'PY'
import collections, datetime, json, statistics, subprocess, sys
prefix, rc, cmd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
rows = []
for line in open(f"{prefix}.csv"):
    f = [x.strip() for x in line.split(",")]
    if len(f) < 7:
        continue
    try:
        rows.append({"util": float(f[1]), "sm_mhz": float(f[2]), "max_mhz": float(f[3]), "watts": float(f[4]),
                     "limit_w": float(f[5]), "reasons": f[6]})
    except ValueError:
        continue
busy = [r for r in rows if r["util"] >= 50]
gpu = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                     capture_output=True, text=True).stdout.strip().splitlines()[0]
doc = {"benchmark": "clock_trace", "device": gpu, "date": datetime.date.today().isoformat(), "command": cmd,
       "exit_code": rc, "samples": len(rows), "busy_samples": len(busy), "sample_interval_ms": 100}
if busy:
    mhz = [r["sm_mhz"] for r in busy]
    watts = [r["watts"] for r in busy]
    doc.update({
        "max_sm_mhz": busy[0]["max_mhz"], "power_limit_w": busy[0]["limit_w"],
        "busy_sm_mhz": {"min": min(mhz), "median": statistics.median(mhz), "max": max(mhz)},
        "busy_watts": {"median": statistics.median(watts), "max": max(watts)},
        # bit 0x4: SW power cap; 0x1: idle; 0x20/0x40: thermal; see nvidia-smi -q -d PERFORMANCE
        "busy_reasons": dict(collections.Counter(r["reasons"] for r in busy).most_common()),
        "busy_power_capped_fraction": sum(int(r["reasons"], 16) & 0x4 != 0 for r in busy) / len(busy),
    })
json.dump(doc, open(f"{prefix}.json", "w"), indent=2)
if busy:
    print(f"{gpu}: {len(busy)} busy samples; SM clock {doc['busy_sm_mhz']['min']:.0f} / "
          f"{doc['busy_sm_mhz']['median']:.0f} / {doc['busy_sm_mhz']['max']:.0f} MHz (min / median / max; "
          f"max clock {doc['max_sm_mhz']:.0f}), power median {doc['busy_watts']['median']:.0f} W of "
          f"{doc['power_limit_w']:.0f}, power-capped in {100 * doc['busy_power_capped_fraction']:.0f}% of samples")
else:
    print(f"{gpu}: no busy samples")
sys.exit(rc)
PY
