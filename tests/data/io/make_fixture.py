#!/usr/bin/env python3
"""Writes tiny.safetensors with Python's `safetensors` package, so that io_test checks our reader against the
reference writer. Needs numpy, safetensors and (for the BF16 tensors) ml_dtypes:
    python3 -m venv /tmp/st && /tmp/st/bin/pip install numpy safetensors ml_dtypes
    /tmp/st/bin/python tests/data/io/make_fixture.py
Every value comes from a formula that io_test.cc repeats; keep the two in step."""
import math
import os

import numpy as np
from safetensors.numpy import save_file

try:
    import ml_dtypes
except ImportError:  # BF16 tensors are then left out (and io_test's BF16 checks fail loudly)
    ml_dtypes = None


def ramp(n, dtype):
    return np.array([i * 0.25 - 3 for i in range(n)], dtype=dtype)


tensors = {
    "ramp.f32": ramp(6, np.float32).reshape(2, 3),
    "ramp.f16": ramp(5, np.float16),
    # zero, -zero, smallest subnormal, largest subnormal, largest normal, inf, -inf, nan
    "specials.f16": np.array([0.0, -0.0, 2.0**-24, 2.0**-14 - 2.0**-24, 65504.0, np.inf, -np.inf, np.nan],
                             dtype=np.float16),
    "scale.f64": np.array([0.1, -2.5], dtype=np.float64),
    "steps.i64": np.array([0, -1, 1 << 40], dtype=np.int64),
    "scalar.f32": np.array(7.5, dtype=np.float32),
    "empty.f32": np.zeros((0, 4), dtype=np.float32),
}

# fp32 values whose bf16 rounding io_test compares with ml_dtypes' (round to nearest even).
f32max = float(np.finfo(np.float32).max)
rounding = [1 + 2.0**-8, 1 + 3 * 2.0**-8, -(1 + 2.0**-8), 1 + 2.0**-8 + 2.0**-23, f32max, 3.3895314e38,
            2.0**-149, 1e-40, -1e-40, math.inf, -math.inf, math.nan, 0.0, -0.0]
rounding += [math.sin(i) * 10.0 ** (i % 7 - 3) for i in range(16)]
tensors["rounding.f32"] = np.array(rounding, dtype=np.float32)
if ml_dtypes is not None:
    tensors["ramp.bf16"] = ramp(6, np.float32).astype(ml_dtypes.bfloat16).reshape(3, 1, 2)
    tensors["rounding.bf16"] = tensors["rounding.f32"].astype(ml_dtypes.bfloat16)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tiny.safetensors")
save_file(tensors, out, metadata={"format": "pt", "source": "make_fixture.py"})
print(out, os.path.getsize(out), "bytes")
