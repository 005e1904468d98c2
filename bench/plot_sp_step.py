"""Speedup over one GPU (and efficiency) of every parallel layout in sp_step result files, one panel per file.

    python3 bench/plot_sp_step.py OUT.png RESULT.json [RESULT.json ...]
"""
import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    out, files = sys.argv[1], sys.argv[2:]
    fig, axes = plt.subplots(1, len(files), figsize=(4.6 * len(files), 4.2), squeeze=False)
    for ax, path in zip(axes[0], files):
        doc = json.load(open(path))
        rows = [r for r in doc["layouts"] if "speedup" in r]
        names = [f"{r['layout']} ({r['ranks']} GPU{'s' if r['ranks'] > 1 else ''})" for r in rows]
        y = range(len(rows))
        ax.barh(y, [r["ranks"] for r in rows], color="0.88", label="ideal")
        ax.barh(y, [r["speedup"] for r in rows], height=0.55, color="tab:blue", label="measured")
        for i, r in enumerate(rows):
            ax.text(r["speedup"] + 0.05, i, f"{r['speedup']:.2f}x ({r['efficiency']:.0%})", va="center", fontsize=7)
        ax.set_yticks(list(y), names, fontsize=8)
        ax.invert_yaxis()
        one = next(r["step_ms"] for r in doc["layouts"] if r["layout"] == "1")
        ax.set_title(f"{doc['config']} {doc['size']}x{doc.get('frames', 81)}\n1 GPU: {one / 1e3:.1f} s per CFG step",
                     fontsize=9)
        ax.set_xlabel("speedup over 1 GPU")
        widest = max(r["ranks"] for r in rows)
        ax.set_xlim(0, widest * 1.45)  # room for the labels beside the widest bar
        ax.legend(fontsize=7, loc="upper right")
    first = json.load(open(files[0]))
    device, gpus = first["device"][0].split(",")[0], len(first["device"])
    fig.suptitle(f"ditrun time per denoising step, {device} x{gpus} (one host, NVLink), {first['date']}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main()
