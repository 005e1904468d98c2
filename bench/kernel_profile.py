"""Time per kernel name, summed, from an Nsight Compute CSV (ncu --csv --metrics gpu__time_duration.sum), leaving
out the random-weight fills and conversions that run before a forward.

    ncu --clock-control none --csv --metrics gpu__time_duration.sum BUILD/bench/dit_forward_bench \\
        --config 1.3b --sizes 832x480 --iters 1 --warmup 0 > prof.csv
    python3 bench/kernel_profile.py prof.csv
"""
import collections
import csv
import re
import sys

UNIT_MS = {"ns": 1e-6, "nsecond": 1e-6, "us": 1e-3, "usecond": 1e-3, "ms": 1.0, "msecond": 1.0}


def main():
    rows = list(csv.reader(open(sys.argv[1])))
    start = next(i for i, r in enumerate(rows) if r and r[0] == "ID")  # ncu prints the program's output first
    head = rows[start]
    name_at, value_at, unit_at = head.index("Kernel Name"), head.index("Metric Value"), head.index("Metric Unit")
    total, count = collections.Counter(), collections.Counter()
    for r in rows[start + 1:]:
        if len(r) != len(head):
            continue
        name = re.sub(r"\(.*", "", r[name_at])[:100]
        if "fill_normal" in name or "convert_kernel" in name:
            continue
        total[name] += float(r[value_at].replace(",", "")) * UNIT_MS.get(r[unit_at], 1e-6)
        count[name] += 1
    s = sum(total.values())
    print(f"forward kernels: {s:.1f} ms over {sum(count.values())} launches (weight fills and conversions left out)")
    for name, ms in total.most_common(30):
        print(f"{ms:9.2f} ms {100 * ms / s:5.1f}% {count[name]:6d}x  {name}")


if __name__ == "__main__":
    main()
