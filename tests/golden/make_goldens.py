#!/usr/bin/env python3
"""Writes the golden reference files of tests/golden/ (see README.md there).

    pip install torch diffusers transformers safetensors h5py numpy      # CPU is enough
    python3 tests/golden/make_goldens.py                                 # writes next to this script

Everything is seeded and computed on the CPU with one thread, so a re-run with the same torch/diffusers versions
rewrites byte-identical files (the script prints the SHA-256 of every file it wrote).

Outputs (all under the output folder, default: this script's folder):
  tiny_dit/transformer/            random-weight diffusers WanTransformer3DModel, fp32, 3 shards + index + config
  tiny_dit_bf16/transformer/       the same weights rounded to bf16, one diffusion_pytorch_model.safetensors
  tiny_dit_wan_names/              the same fp32 weights under the original Wan key names + Wan-style config.json
  dit_forward.h5                   DiT forward inputs/outputs (float64 reference)
  sampler.h5                       full CFG sampling loops (UniPC, Euler, UniPC on the original Wan sigma grid)
"""

import argparse
import copy
import hashlib
import json
import math
import os
import re
import shutil
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler, WanTransformer3DModel
from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

# ----------------------------------------------------------------------------------------------------------------
# Fixed settings

TINY_CONFIG = dict(
    patch_size=(1, 2, 2),
    num_attention_heads=2,
    attention_head_dim=32,  # dim D = 64
    in_channels=16,
    out_channels=16,
    text_dim=32,
    freq_dim=256,
    ffn_dim=128,
    num_layers=2,
    cross_attn_norm=True,
    qk_norm="rms_norm_across_heads",
    eps=1e-6,
    rope_max_seq_len=1024,
)
TEXT_LEN = 512  # rows the DiT always sees (real rows + zero rows), as WanPipeline.encode_prompt pads

SEED_CONSTRUCT = 0  # torch.manual_seed before constructing the module (its own init is overwritten anyway)
SEED_WEIGHTS = 20250101  # generator that re-draws every parameter
SEED_INPUTS = 1234  # generator for x, context, context_null, x2
SEED_NOISE = 42  # generator for the sampler's x_T

# Re-draw of every parameter (name order = sorted):
#   attention q/k RMSNorm weights (attn1/attn2 .norm_q/.norm_k.weight):  QK_NORM_GAIN * (1 + N(0, 0.1))
#   affine LayerNorm weight (blocks.i.norm2.weight, cross-attn LN):       1 + N(0, 0.1)
#   scale_shift_table (top [1,2,D] and per block [1,6,D]):               N(0, 0.2)
#   every bias (incl. blocks.i.norm2.bias):                               N(0, 0.2)
#   every other weight (Linear [out,in], Conv3d [out,in,1,2,2]):          N(0, 1/fan_in)
# The fan-in scaling keeps activations O(1) through the time MLP (fan-in 256) so that modulation, gates and
# residuals are all of comparable size; QK_NORM_GAIN = 2 sharpens the attention logits (std ~4 instead of ~1) so
# that the 7 real text rows are not drowned by the 505 zero rows in cross-attention (without it, cond and null
# outputs differ by <1%).
QK_NORM_GAIN = 2.0
NORM_STD = 0.1
BIAS_STD = 0.2
TABLE_STD = 0.2

T_FORWARD = 937  # timestep of the first forward case
T_FORWARD2 = 421  # timestep of the second (odd, non-square) case
N_CTX, N_CTX_NULL = 7, 5  # real text rows of context / context_null
GUIDANCE = 5.0
FLOW_SHIFT = 3.0

# scheduler/scheduler_config.json of Wan-AI/Wan2.1-T2V-1.3B-Diffusers (also what scripts/convert_wan_to_diffusers.py
# builds: UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True, num_train_timesteps=1000,
# flow_shift=3.0)); every other key is the class default.
WAN21_DIFFUSERS_UNIPC_CONFIG = {
    "beta_end": 0.02,
    "beta_schedule": "linear",
    "beta_start": 0.0001,
    "disable_corrector": [],
    "dynamic_thresholding_ratio": 0.995,
    "final_sigmas_type": "zero",
    "flow_shift": 3.0,
    "lower_order_final": True,
    "num_train_timesteps": 1000,
    "predict_x0": True,
    "prediction_type": "flow_prediction",
    "rescale_betas_zero_snr": False,
    "sample_max_value": 1.0,
    "solver_order": 2,
    "solver_p": None,
    "solver_type": "bh2",
    "steps_offset": 0,
    "thresholding": False,
    "timestep_spacing": "linspace",
    "trained_betas": None,
    "use_beta_sigmas": False,
    "use_exponential_sigmas": False,
    "use_flow_sigmas": True,
    "use_karras_sigmas": False,
}


def log(*a):
    print(*a, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Model


def build_model():
    torch.manual_seed(SEED_CONSTRUCT)
    model = WanTransformer3DModel(**TINY_CONFIG).eval()
    params = dict(model.named_parameters())
    assert sorted(params) == sorted(model.state_dict()), "state dict has entries that are not parameters"
    g = torch.Generator().manual_seed(SEED_WEIGHTS)
    with torch.no_grad():
        for name in sorted(params):
            p = params[name]
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if re.search(r"\.norm_[qk]\.weight$", name):
                p.copy_(QK_NORM_GAIN * (1.0 + NORM_STD * r))
            elif re.search(r"norm\d?\.weight$", name):
                p.copy_(1.0 + NORM_STD * r)
            elif "scale_shift_table" in name:
                p.copy_(TABLE_STD * r)
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * r)
            elif name.endswith(".weight") and p.dim() >= 2:
                p.copy_(r / math.sqrt(p[0].numel()))
            else:
                raise RuntimeError(f"no init rule for {name} {tuple(p.shape)}")
    return model


# diffusers name -> original Wan name (inverse of spec §3.3 / diffusers' convert_wan_transformer_to_diffusers)
_TOP_RENAMES = {
    "condition_embedder.time_embedder.linear_1.": "time_embedding.0.",
    "condition_embedder.time_embedder.linear_2.": "time_embedding.2.",
    "condition_embedder.text_embedder.linear_1.": "text_embedding.0.",
    "condition_embedder.text_embedder.linear_2.": "text_embedding.2.",
    "condition_embedder.time_proj.": "time_projection.1.",
    "proj_out.": "head.head.",
    "patch_embedding.": "patch_embedding.",
}
_BLOCK_RENAMES = {
    "attn1.to_q.": "self_attn.q.",
    "attn1.to_k.": "self_attn.k.",
    "attn1.to_v.": "self_attn.v.",
    "attn1.to_out.0.": "self_attn.o.",
    "attn1.norm_q.": "self_attn.norm_q.",
    "attn1.norm_k.": "self_attn.norm_k.",
    "attn2.to_q.": "cross_attn.q.",
    "attn2.to_k.": "cross_attn.k.",
    "attn2.to_v.": "cross_attn.v.",
    "attn2.to_out.0.": "cross_attn.o.",
    "attn2.norm_q.": "cross_attn.norm_q.",
    "attn2.norm_k.": "cross_attn.norm_k.",
    "norm2.": "norm3.",  # the affine cross-attention LayerNorm
    "ffn.net.0.proj.": "ffn.0.",
    "ffn.net.2.": "ffn.2.",
}


def diffusers_to_wan_name(key):
    if key == "scale_shift_table":
        return "head.modulation"
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", key)
    if m:
        i, rest = m.groups()
        if rest == "scale_shift_table":
            return f"blocks.{i}.modulation"
        for old, new in _BLOCK_RENAMES.items():
            if rest.startswith(old):
                return f"blocks.{i}.{new}{rest[len(old):]}"
    else:
        for old, new in _TOP_RENAMES.items():
            if key.startswith(old):
                return new + key[len(old):]
    raise KeyError(f"no Wan name for diffusers key {key}")


def wan_to_diffusers_name_spec(key):
    """Forward renames exactly as listed in spec §3.3 (substring replacements, in order)."""
    renames = [
        ("time_embedding.0", "condition_embedder.time_embedder.linear_1"),
        ("time_embedding.2", "condition_embedder.time_embedder.linear_2"),
        ("text_embedding.0", "condition_embedder.text_embedder.linear_1"),
        ("text_embedding.2", "condition_embedder.text_embedder.linear_2"),
        ("time_projection.1", "condition_embedder.time_proj"),
        ("head.modulation", "scale_shift_table"),
        ("head.head", "proj_out"),
        ("modulation", "scale_shift_table"),
        ("ffn.0", "ffn.net.0.proj"),
        ("ffn.2", "ffn.net.2"),
        ("norm2", "norm__placeholder"),
        ("norm3", "norm2"),
        ("norm__placeholder", "norm3"),
        ("self_attn", "attn1"),
        ("cross_attn", "attn2"),
        (".q.", ".to_q."),
        (".k.", ".to_k."),
        (".v.", ".to_v."),
        (".o.", ".to_out.0."),
    ]
    for old, new in renames:
        key = key.replace(old, new)
    return key


def write_models(model, out):
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}

    # 1. diffusers layout, fp32, sharded
    tdir = os.path.join(out, "tiny_dit", "transformer")
    shutil.rmtree(os.path.join(out, "tiny_dit"), ignore_errors=True)
    model.save_pretrained(tdir, safe_serialization=True, max_shard_size="300KB")
    shards = sorted(f for f in os.listdir(tdir) if f.endswith(".safetensors"))
    assert len(shards) in (2, 3), shards
    assert os.path.exists(os.path.join(tdir, "diffusion_pytorch_model.safetensors.index.json"))
    reloaded = WanTransformer3DModel.from_pretrained(tdir, torch_dtype=torch.float32).state_dict()
    assert sorted(reloaded) == sorted(sd)
    for k in sd:
        assert reloaded[k].dtype == torch.float32 and torch.equal(reloaded[k], sd[k]), k
    log(f"tiny_dit: {len(sd)} tensors, {sum(v.numel() for v in sd.values())} parameters, shards {shards}")

    # 2. bf16 copy, one file
    bdir = os.path.join(out, "tiny_dit_bf16", "transformer")
    shutil.rmtree(os.path.join(out, "tiny_dit_bf16"), ignore_errors=True)
    os.makedirs(bdir)
    sd_bf16 = {k: v.to(torch.bfloat16).contiguous() for k, v in sd.items()}
    save_file(sd_bf16, os.path.join(bdir, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(os.path.join(tdir, "config.json"), os.path.join(bdir, "config.json"))
    back = load_file(os.path.join(bdir, "diffusion_pytorch_model.safetensors"))
    for k in sd:
        assert back[k].dtype == torch.bfloat16 and torch.equal(back[k], sd_bf16[k]), k

    # 3. original Wan names, fp32, one file
    wdir = os.path.join(out, "tiny_dit_wan_names")
    shutil.rmtree(wdir, ignore_errors=True)
    os.makedirs(wdir)
    sd_wan = {diffusers_to_wan_name(k): v for k, v in sd.items()}
    assert len(sd_wan) == len(sd), "rename is not one-to-one"
    D = model.config.num_attention_heads * model.config.attention_head_dim
    assert tuple(sd_wan["head.modulation"].shape) == (1, 2, D)
    assert tuple(sd["scale_shift_table"].shape) == (1, 2, D)
    for i in range(model.config.num_layers):
        assert tuple(sd_wan[f"blocks.{i}.modulation"].shape) == (1, 6, D)
        assert tuple(sd[f"blocks.{i}.scale_shift_table"].shape) == (1, 6, D)
    assert tuple(sd_wan["head.head.weight"].shape) == (16 * 4, D)
    save_file(sd_wan, os.path.join(wdir, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    wan_config = {
        "_class_name": "WanModel",
        "_diffusers_version": "0.30.0",
        "model_type": "t2v",
        "dim": D,
        "eps": model.config.eps,
        "ffn_dim": model.config.ffn_dim,
        "freq_dim": model.config.freq_dim,
        "in_dim": model.config.in_channels,
        "num_heads": model.config.num_attention_heads,
        "num_layers": model.config.num_layers,
        "out_dim": model.config.out_channels,
        "text_len": TEXT_LEN,
        "text_dim": model.config.text_dim,
    }
    with open(os.path.join(wdir, "config.json"), "w") as f:
        json.dump(wan_config, f, indent=2, sort_keys=True)
        f.write("\n")

    # verify the renamed file: (a) the forward renames of spec §3.3, (b) diffusers' own single-file converter
    wan_back = load_file(os.path.join(wdir, "diffusion_pytorch_model.safetensors"))
    assert sorted(wan_back) == sorted(sd_wan)
    via_spec = {wan_to_diffusers_name_spec(k): v for k, v in wan_back.items()}
    via_diffusers = convert_wan_transformer_to_diffusers(dict(wan_back))
    for name, conv in (("spec §3.3 renames", via_spec), ("diffusers convert_wan_transformer_to_diffusers", via_diffusers)):
        assert sorted(conv) == sorted(sd), (name, sorted(set(conv) ^ set(sd)))
        for k in sd:
            assert conv[k].dtype == torch.float32 and torch.equal(conv[k], sd[k]), (name, k)
        log(f"tiny_dit_wan_names: round trip through {name}: OK")
    return sd, sd_bf16, wan_back


# ----------------------------------------------------------------------------------------------------------------
# Independent float64 re-implementation of the ORIGINAL Wan forward (spec §1, wan/modules/model.py semantics),
# fed with the Wan-named tensors read back from tiny_dit_wan_names. Used only as a cross-check of the diffusers
# reference (whose FP32LayerNorm / .float() casts / fp32 sinusoid keep it at fp32 precision in places).


def wan_reference_forward(W, x, t, ctx_rows, num_heads, eps=1e-6, text_len=TEXT_LEN):
    f64 = torch.float64
    W = {k: v.to(f64) for k, v in W.items()}
    D = W["patch_embedding.weight"].shape[0]
    n, d = num_heads, D // num_heads
    num_layers = 1 + max(int(k.split(".")[1]) for k in W if k.startswith("blocks."))
    freq_dim = W["time_embedding.0.weight"].shape[1]
    pt, ph, pw = W["patch_embedding.weight"].shape[2:]

    def lin(z, name):
        return z @ W[name + ".weight"].T + W[name + ".bias"]

    def ln(z, w=None, b=None):
        return F.layer_norm(z, (D,), w, b, eps)

    def rms(z, w):
        return z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + eps) * w

    def attention(q, k, v):  # [Lq,D], [Lk,D], [Lk,D]
        q, k, v = (z.view(-1, n, d).transpose(0, 1) for z in (q, k, v))
        a = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v
        return a.transpose(0, 1).reshape(-1, D)

    # patch embedding, tokens row-major over (f, h, w)
    h = F.conv3d(x[None].to(f64), W["patch_embedding.weight"], W["patch_embedding.bias"], stride=(pt, ph, pw))
    Fg, Hg, Wg = h.shape[2:]
    h = h.flatten(2).transpose(1, 2)[0]  # [L, D]
    L = h.shape[0]

    # time: sinusoid [cos | sin] in float64, time_embedding, time_projection
    half = freq_dim // 2
    pos = torch.tensor([float(t)], dtype=f64)
    sinusoid = torch.outer(pos, torch.pow(10000.0, -torch.arange(half, dtype=f64).div(half)))
    s = torch.cat([torch.cos(sinusoid), torch.sin(sinusoid)], dim=1)
    e = lin(F.silu(lin(s, "time_embedding.0")), "time_embedding.2")  # [1, D]
    e0 = lin(F.silu(e), "time_projection.1").view(6, D)

    # text: zero-pad to text_len rows, then text_embedding (GELU tanh)
    c = torch.zeros(text_len, ctx_rows.shape[1], dtype=f64)
    c[: ctx_rows.shape[0]] = ctx_rows.to(f64)
    c = lin(F.gelu(lin(c, "text_embedding.0"), approximate="tanh"), "text_embedding.2")

    # 3D RoPE: split d into t/h/w parts, interleaved pairs, theta 10000
    d_hw = 2 * (d // 6)
    d_t = d - 2 * d_hw

    def omega(dim):
        return 1.0 / torch.pow(10000.0, torch.arange(0, dim, 2, dtype=f64) / dim)

    fi, hi, wi = torch.meshgrid(
        torch.arange(Fg, dtype=f64), torch.arange(Hg, dtype=f64), torch.arange(Wg, dtype=f64), indexing="ij"
    )
    ang = torch.cat(
        [
            fi.reshape(-1, 1) * omega(d_t)[None],
            hi.reshape(-1, 1) * omega(d_hw)[None],
            wi.reshape(-1, 1) * omega(d_hw)[None],
        ],
        dim=1,
    )  # [L, d/2]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

    def rope(z):  # [L, D]
        z = z.view(L, n, d)
        z0, z1 = z[..., 0::2], z[..., 1::2]
        out = torch.empty_like(z)
        out[..., 0::2] = z0 * cos - z1 * sin
        out[..., 1::2] = z0 * sin + z1 * cos
        return out.reshape(L, D)

    for i in range(num_layers):
        p = f"blocks.{i}."
        m = W[p + "modulation"][0] + e0  # [6, D]: shift_sa, scale_sa, gate_sa, shift_ffn, scale_ffn, gate_ffn
        a = ln(h) * (1 + m[1]) + m[0]
        q = rope(rms(lin(a, p + "self_attn.q"), W[p + "self_attn.norm_q.weight"]))
        k = rope(rms(lin(a, p + "self_attn.k"), W[p + "self_attn.norm_k.weight"]))
        v = lin(a, p + "self_attn.v")
        h = h + lin(attention(q, k, v), p + "self_attn.o") * m[2]
        a = ln(h, W[p + "norm3.weight"], W[p + "norm3.bias"])
        q = rms(lin(a, p + "cross_attn.q"), W[p + "cross_attn.norm_q.weight"])
        k = rms(lin(c, p + "cross_attn.k"), W[p + "cross_attn.norm_k.weight"])
        v = lin(c, p + "cross_attn.v")
        h = h + lin(attention(q, k, v), p + "cross_attn.o")
        a = ln(h) * (1 + m[4]) + m[3]
        h = h + lin(F.gelu(lin(a, p + "ffn.0"), approximate="tanh"), p + "ffn.2") * m[5]

    hm = W["head.modulation"][0] + e  # [2, D]: shift, scale
    out = lin(ln(h) * (1 + hm[1]) + hm[0], "head.head")  # [L, pt*ph*pw*C]
    C = out.shape[1] // (pt * ph * pw)
    u = out.view(Fg, Hg, Wg, pt, ph, pw, C)
    u = torch.einsum("fhwpqrc->cfphqwr", u)
    return u.reshape(C, Fg * pt, Hg * ph, Wg * pw)


# ----------------------------------------------------------------------------------------------------------------
# diffusers reference runs


def pad_context(rows, dtype=torch.float64):
    c = torch.zeros(1, TEXT_LEN, rows.shape[1], dtype=dtype)
    c[0, : rows.shape[0]] = rows.to(dtype)
    return c


@torch.no_grad()
def run_dit(model64, x, t, ctx_rows):
    """x [C,F,H,W] (any float dtype), t: int or 0-dim/1-elem tensor, ctx_rows [L,text_dim]. Returns [C,F,H,W] f64."""
    ts = t.reshape(1) if torch.is_tensor(t) else torch.tensor([t], dtype=torch.int64)
    out = model64(
        hidden_states=x[None].to(torch.float64),
        timestep=ts,
        encoder_hidden_states=pad_context(ctx_rows),
        return_dict=False,
    )[0]
    assert out.dtype == torch.float64
    return out[0]


def h5_ds(f, name, arr):
    arr = np.ascontiguousarray(arr)
    return f.create_dataset(name, data=arr, track_times=False)


def rel_err(a, b):
    return float((a - b).abs().max() / b.abs().max())


def wan_original_grid(n_steps, shift, num_train_timesteps=1000):
    """wan/utils/fm_solvers_unipc.py FlowUniPCMultistepScheduler(num_train_timesteps=1000, shift=1) then
    set_timesteps(n_steps, shift=shift): returns (unshifted sigmas [N] f64, shifted sigmas [N+1] f32, timesteps [N] i64)."""
    alphas = np.linspace(1, 1 / num_train_timesteps, num_train_timesteps)[::-1].copy()
    train_sigmas = torch.from_numpy(1.0 - alphas).to(torch.float32)  # shift=1 at construction: unchanged
    sigma_max, sigma_min = train_sigmas[0].item(), train_sigmas[-1].item()  # 0.9990000128746033, 0.0
    base = np.linspace(sigma_max, sigma_min, n_steps + 1).copy()[:-1]
    shifted = shift * base / (1 + (shift - 1) * base)
    timesteps = torch.from_numpy(shifted * num_train_timesteps).to(torch.int64)
    sigmas = np.concatenate([shifted, [0]]).astype(np.float32)
    return base, sigmas, timesteps.numpy()


@torch.no_grad()
def sample_loop(model64, scheduler, x_T, ctx, ctx_null, guidance, grp, n_steps=None, sigmas=None):
    if sigmas is not None:
        scheduler.set_timesteps(sigmas=sigmas)
    else:
        scheduler.set_timesteps(n_steps)
    timesteps = scheduler.timesteps
    x = x_T[None].to(torch.float64)
    xs, vs = [], []
    for i, t in enumerate(timesteps):
        ts = t.expand(1)  # exactly what WanPipeline passes: int64 for UniPC, float32 for FlowMatchEuler
        v_c = run_dit(model64, x[0], ts, ctx)
        v_u = run_dit(model64, x[0], ts, ctx_null)
        v = v_u + guidance * (v_c - v_u)
        x = scheduler.step(v[None], t, x, return_dict=False)[0]
        assert x.dtype == torch.float64
        h5_ds(grp, f"v/{i + 1:04d}", v.numpy())
        h5_ds(grp, f"x/{i + 1:04d}", x[0].numpy())
        xs.append(x[0].numpy().copy())
        vs.append(v.numpy().copy())
    h5_ds(grp, "timesteps", timesteps.to(torch.float64).numpy())
    h5_ds(grp, "sigmas", scheduler.sigmas.to(torch.float64).numpy())
    cfg = {k: v for k, v in dict(scheduler.config).items() if not k.startswith("_")}  # drops _use_default_values
    cfg["_class_name"] = type(scheduler).__name__
    grp.attrs["scheduler_class"] = type(scheduler).__name__
    grp.attrs["scheduler_config"] = json.dumps(cfg, sort_keys=True)
    grp.attrs["num_inference_steps"] = len(timesteps)
    return timesteps, scheduler.sigmas, x[0], xs, vs


def unipc_spec_trajectory(x_T, vs, sigmas):
    """UniPC (bh2, predict_x0, solver_order 2, lower_order_final) written from spec §6.4 in float64, fed with the
    stored CFG velocities; returns the latent after every step. Cross-check of diffusers' step() only."""

    def lam(s):
        return math.log(1.0 - s) - math.log(s)

    n = len(vs)
    x, last, ms, prev_order, lower = x_T, None, [], 0, 0
    out = []
    for i in range(n):
        s = sigmas[i]
        m = x - s * vs[i]
        if i >= 1:  # corrector with the previous step's order
            sp = sigmas[i - 1]
            h = lam(s) - lam(sp)
            hh = -h
            phi1 = math.expm1(hh)
            B = math.expm1(hh)
            m0 = ms[-1]
            xhat = (s / sp) * last - (1 - s) * phi1 * m0
            if prev_order == 1:
                x = xhat - (1 - s) * B * 0.5 * (m - m0)
            else:
                r = (lam(sigmas[i - 2]) - lam(sp)) / h
                D = (ms[-2] - m0) / r
                g1 = phi1 / hh - 1
                g2 = g1 / hh - 0.5
                rho = np.linalg.solve(np.array([[1.0, 1.0], [r, 1.0]]), np.array([g1 / B, g2 * 2 / B]))
                x = xhat - (1 - s) * B * (rho[0] * D + rho[1] * (m - m0))
        ms = (ms + [m])[-2:]
        order = min(2, n - i, lower + 1)
        t = sigmas[i + 1]
        if t == 0:
            x_new = m
        else:
            h = lam(t) - lam(s)
            hh = -h
            x_new = (t / s) * x - (1 - t) * math.expm1(hh) * m
            if order == 2:
                r = (lam(sigmas[i - 1]) - lam(s)) / h
                x_new = x_new - (1 - t) * math.expm1(hh) * 0.5 * (ms[-2] - m) / r
        last, x, prev_order, lower = x, x_new, order, min(lower + 1, 2)
        out.append(x)
    return out


def check_solvers(x_T, runs):
    """Re-derive every stored latent from the stored velocities with spec-level formulas (float64)."""
    errs = {}
    x_T = x_T.numpy().astype(np.float64)
    for solver, (timesteps, sigmas, _, xs, vs) in runs.items():
        sig = [float(v) for v in sigmas]
        n = len(timesteps)
        if solver == "euler":
            ref, x = [], x_T
            for i in range(n):
                x = x + (sig[i + 1] - sig[i]) * vs[i]
                ref.append(x)
        else:
            ref = unipc_spec_trajectory(x_T, vs, sig)
        errs[solver] = max(float(np.abs(a - b).max() / np.abs(b).max()) for a, b in zip(xs, ref))
    log("stored latents vs spec-level float64 re-derivation from the stored v (max rel):", errs)
    assert max(errs.values()) < 1e-5, errs
    return errs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)), help="output folder")
    args = ap.parse_args()
    out = args.out
    os.makedirs(out, exist_ok=True)

    torch.set_num_threads(1)  # fixed reduction order
    torch.use_deterministic_algorithms(True)
    versions = {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "numpy": np.__version__,
        "h5py": h5py.__version__,
        "python": sys.version.split()[0],
    }
    log("versions:", json.dumps(versions))

    model = build_model()
    sd, sd_bf16, sd_wan = write_models(model, out)
    model64 = copy.deepcopy(model).double().eval()
    model_bf16w = copy.deepcopy(model)
    model_bf16w.load_state_dict({k: v.to(torch.float32) for k, v in sd_bf16.items()})
    model_bf16w = model_bf16w.double().eval()

    # ---------------- dit_forward.h5
    g = torch.Generator().manual_seed(SEED_INPUTS)
    x = torch.randn(16, 3, 6, 8, generator=g, dtype=torch.float32)
    ctx = torch.randn(N_CTX, TINY_CONFIG["text_dim"], generator=g, dtype=torch.float32)
    ctx_null = torch.randn(N_CTX_NULL, TINY_CONFIG["text_dim"], generator=g, dtype=torch.float32)
    x2 = torch.randn(16, 2, 4, 10, generator=g, dtype=torch.float32)

    v = run_dit(model64, x, T_FORWARD, ctx)
    v_null = run_dit(model64, x, T_FORWARD, ctx_null)
    v_bf16 = run_dit(model_bf16w, x, T_FORWARD, ctx)
    v2 = run_dit(model64, x2, T_FORWARD2, ctx)
    with torch.no_grad():
        v32 = model(x[None], torch.tensor([T_FORWARD]), pad_context(ctx, torch.float32), return_dict=False)[0][0]
    heads = TINY_CONFIG["num_attention_heads"]
    r = wan_reference_forward(sd_wan, x, T_FORWARD, ctx, heads)
    r_null = wan_reference_forward(sd_wan, x, T_FORWARD, ctx_null, heads)
    r2 = wan_reference_forward(sd_wan, x2, T_FORWARD2, ctx, heads)
    errs = {
        "v": rel_err(v, r),
        "v_null": rel_err(v_null, r_null),
        "v2": rel_err(v2, r2),
        "v (fp32 diffusers run)": rel_err(v32.double(), r),
    }
    log("diffusers (model.double()) vs independent float64 original-Wan forward, max|diff|/max|ref|:", errs)
    assert max(errs.values()) < 1e-4, errs

    path = os.path.join(out, "dit_forward.h5")
    with h5py.File(path, "w") as f:
        h5_ds(f, "x", x.numpy())
        h5_ds(f, "t", np.float64(T_FORWARD))
        h5_ds(f, "context", ctx.numpy())
        h5_ds(f, "context_null", ctx_null.numpy())
        h5_ds(f, "v", v.numpy())
        h5_ds(f, "v_null", v_null.numpy())
        h5_ds(f, "v_bf16weights", v_bf16.numpy())
        h5_ds(f, "x2", x2.numpy())
        h5_ds(f, "t2", np.float64(T_FORWARD2))
        h5_ds(f, "v2", v2.numpy())
        h5_ds(f, "ref_f64/v", r.numpy())
        h5_ds(f, "ref_f64/v_null", r_null.numpy())
        h5_ds(f, "ref_f64/v2", r2.numpy())
        f.attrs["model"] = "tiny_dit (tiny_dit/transformer, tiny_dit_wan_names: same weights)"
        tcfg = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}  # _use_default_values: set order
        f.attrs["transformer_config"] = json.dumps(tcfg, sort_keys=True, default=list)
        f.attrs["text_len"] = TEXT_LEN
        f.attrs["versions"] = json.dumps(versions, sort_keys=True)
        f.attrs["ref_f64_max_rel_diff"] = json.dumps(errs, sort_keys=True)

    # ---------------- sampler.h5
    x_T = torch.randn(16, 3, 6, 8, generator=torch.Generator().manual_seed(SEED_NOISE), dtype=torch.float32)
    path_s = os.path.join(out, "sampler.h5")
    sched_info = {}
    with h5py.File(path_s, "w") as f:
        h5_ds(f, "x_T", x_T.numpy())
        h5_ds(f, "context", ctx.numpy())
        h5_ds(f, "context_null", ctx_null.numpy())
        h5_ds(f, "guidance_scale", np.float64(GUIDANCE))
        f.attrs["model"] = "tiny_dit"
        f.attrs["text_len"] = TEXT_LEN
        f.attrs["versions"] = json.dumps(versions, sort_keys=True)

        unipc = UniPCMultistepScheduler.from_config(WAN21_DIFFUSERS_UNIPC_CONFIG)
        sched_info["unipc"] = sample_loop(model64, unipc, x_T, ctx, ctx_null, GUIDANCE, f.create_group("unipc"), n_steps=6)

        euler = FlowMatchEulerDiscreteScheduler(shift=FLOW_SHIFT)
        sched_info["euler"] = sample_loop(model64, euler, x_T, ctx, ctx_null, GUIDANCE, f.create_group("euler"), n_steps=4)

        base, wan_sigmas, wan_ts = wan_original_grid(6, FLOW_SHIFT)
        unipc_w = UniPCMultistepScheduler.from_config(WAN21_DIFFUSERS_UNIPC_CONFIG)
        grp = f.create_group("unipc_wan_grid")
        sched_info["unipc_wan_grid"] = sample_loop(
            model64, unipc_w, x_T, ctx, ctx_null, GUIDANCE, grp, sigmas=base.copy()  # ndarray: a list raises
        )
        ts_w, sig_w = sched_info["unipc_wan_grid"][:2]
        assert np.array_equal(ts_w.numpy(), wan_ts), (ts_w, wan_ts)
        assert np.array_equal(sig_w.numpy(), wan_sigmas), (sig_w, wan_sigmas)
        h5_ds(grp, "sigmas_unshifted_input", base)
        grp.attrs["note"] = (
            "set_timesteps(sigmas=linspace(float32(0.999), 0, 7)[:6]); diffusers applies flow_shift itself; "
            "timesteps/sigmas equal wan/utils/fm_solvers_unipc.py set_timesteps(6, shift=3)"
        )
        solver_errs = check_solvers(x_T, sched_info)
        f.attrs["spec_rederivation_max_rel_diff"] = json.dumps(solver_errs, sort_keys=True)


    # ---------------- summary
    def stats(name, a):
        a = a.double()
        log(f"  {name:28s} {str(tuple(a.shape)):16s} norm={a.norm().item():10.4f} min={a.min().item():9.4f} "
            f"max={a.max().item():9.4f} std={a.std().item():.4f}")

    log("\ndit_forward.h5:")
    for nme, a in [("x", x), ("context", ctx), ("context_null", ctx_null), ("v", v), ("v_null", v_null),
                   ("v_bf16weights", v_bf16), ("x2", x2), ("v2", v2)]:
        stats(nme, a)
    log(f"  |v - v_null|/|v| = {((v - v_null).norm() / v.norm()).item():.4f}   "
        f"|v - v_bf16weights|/|v| = {((v - v_bf16).norm() / v.norm()).item():.2e}")
    log("\nsampler.h5:")
    stats("x_T", x_T)
    with h5py.File(path_s, "r") as f:
        for solver in ("unipc", "euler", "unipc_wan_grid"):
            ts, sig, xf = sched_info[solver][:3]
            log(f"  {solver}: timesteps={ts.tolist()}")
            log(f"  {' ' * len(solver)}  sigmas={[float(s) for s in sig]}")
            n = len(ts)
            for i in range(1, n + 1):
                stats(f"{solver}/v/{i:04d}", torch.from_numpy(f[f"{solver}/v/{i:04d}"][()]))
            stats(f"{solver}/x/{n:04d}", xf)
    rope = model.rope
    log(f"\nRoPE split for head_dim {TINY_CONFIG['attention_head_dim']}: t_dim={rope.t_dim} h_dim={rope.h_dim} "
        f"w_dim={rope.w_dim} (complex pairs {rope.t_dim // 2}/{rope.h_dim // 2}/{rope.w_dim // 2})")
    # which parameters diffusers keeps in fp32 when loading this checkpoint with torch_dtype=bfloat16
    m_bf = WanTransformer3DModel.from_pretrained(os.path.join(out, "tiny_dit", "transformer"), torch_dtype=torch.bfloat16)
    kept = sorted(k for k, p in m_bf.state_dict().items() if p.dtype == torch.float32)
    log(f"\nfrom_pretrained(torch_dtype=bfloat16) keeps fp32: {kept}")

    log("\nfiles:")
    total = 0
    for root, _, files in sorted(os.walk(out)):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            if fn.endswith((".py", ".md")) or "__pycache__" in p:
                continue
            total += os.path.getsize(p)
            log(f"  {os.path.relpath(p, out):60s} {os.path.getsize(p):9d}  "
                f"sha256 {hashlib.sha256(open(p, 'rb').read()).hexdigest()[:16]}")
    log(f"  total {total} bytes")


if __name__ == "__main__":
    main()
