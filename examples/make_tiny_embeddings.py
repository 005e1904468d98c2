"""Stand-in text embeddings for the example job (examples/tiny_embeddings.h5).

`ditrun run` encodes prompt text itself (the tiny umT5 for the tiny model); a job may instead name a file of
precomputed umT5 outputs (`prompts.embeddings`, layout in README.md). For the built-in tiny model (text_dim 64)
this script writes seeded random embeddings, one per prompt id of examples/prompts.jsonl, plus a shared negative:
a fixed input that needs no encoder, used by the Slurm test. They carry no meaning.

    python3 examples/make_tiny_embeddings.py        (needs numpy and h5py)
"""
import json
import pathlib

import h5py
import numpy as np

here = pathlib.Path(__file__).parent
rng = np.random.default_rng(2026)
with h5py.File(here / "tiny_embeddings.h5", "w") as f:
    f.attrs["note"] = "seeded random stand-ins for umT5 outputs (text_dim 64); see make_tiny_embeddings.py"
    for line in (here / "prompts.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        item = json.loads(line)
        rows = min(512, 4 + len(item["prompt"].split()))  # about one row per word, like a tokenised prompt
        f[f"{item['id']}/context"] = (0.5 * rng.standard_normal((rows, 64))).astype(np.float32)
    f["negative/context"] = (0.5 * rng.standard_normal((6, 64))).astype(np.float32)
