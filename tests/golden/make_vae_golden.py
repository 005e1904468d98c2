#!/usr/bin/env python3
"""Writes the Wan-VAE decoder golden files of tests/golden/ (see README.md there, section "Wan-VAE decoder").

    pip install torch diffusers safetensors h5py numpy                  # CPU is enough
    python3 tests/golden/make_vae_golden.py                              # writes next to this script

Everything is seeded and computed on the CPU with one thread, so a re-run with the same torch/diffusers versions
rewrites byte-identical files (the script prints the SHA-256 of every file it wrote).

Outputs (under the output folder, default: this script's folder):
  tiny_vae/config.json                         AutoencoderKLWan config (base_dim 4: ditrun's built-in `tiny` VAE)
  tiny_vae/diffusion_pytorch_model.safetensors the decoder's tensors (post_quant_conv.*, decoder.*), fp32
  vae_decode.h5                                a normalised latent and diffusers' decode of it

Latent convention: ditrun's decoder takes the latent as the DiT produces it, normalised (spec §4.1). diffusers'
AutoencoderKLWan.decode takes the un-normalised z, so this script feeds it z = latents·std + mean per channel
(what WanPipeline does before calling vae.decode).
"""

import argparse
import hashlib
import json
import os
import shutil
import sys

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import diffusers
from diffusers import AutoencoderKLWan

# ----------------------------------------------------------------------------------------------------------------
# Fixed settings

TINY_VAE_CONFIG = dict(
    base_dim=4,  # decoder widths 16/16/16/8/4: the checkpoint stays ~0.5 MB
    z_dim=16,
    dim_mult=[1, 2, 4, 4],
    num_res_blocks=2,
    attn_scales=[],
    temperal_downsample=[False, True, True],  # decoder: temperal_upsample = [True, True, False]
    dropout=0.0,
)
LATENT_SHAPE = (16, 3, 6, 8)  # [C, T, h, w]: T = 3 -> 1 + 4·2 = 9 frames of 48×64 (non-square catches H/W swaps)

SEED_CONSTRUCT = 0  # torch.manual_seed before constructing the module (its decoder init is overwritten)
SEED_WEIGHTS = 20250201  # generator that re-draws every decoder parameter
SEED_INPUTS = 4321  # generator for the latent

# Re-draw of every saved parameter (post_quant_conv.*, decoder.*; name order = sorted):
#   RMS_norm gamma:                1 + N(0, 0.1²)
#   every bias:                    N(0, 0.1²)
#   every other weight (convs):    N(0, 1/fan_in), fan_in = in_channels · kernel volume;
#                                  decoder.conv_out.weight additionally × OUT_GAIN
# OUT_GAIN keeps the output mostly inside (−1, 1), so the final clamp touches few pixels and the comparison
# measures the network, not the clamp.
NORM_STD = 0.1
BIAS_STD = 0.1
OUT_GAIN = 0.75

CACHE_T = 2


def log(*a):
    print(*a, flush=True)


def build_model():
    torch.manual_seed(SEED_CONSTRUCT)
    model = AutoencoderKLWan(**TINY_VAE_CONFIG).eval()
    g = torch.Generator().manual_seed(SEED_WEIGHTS)
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name in sorted(params):
            if not (name.startswith("decoder.") or name.startswith("post_quant_conv.")):
                continue
            p = params[name]
            r = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith(".gamma"):
                p.copy_(1 + NORM_STD * r)
            elif name.endswith(".bias"):
                p.copy_(BIAS_STD * r)
            elif name.endswith(".weight") and p.dim() >= 4:
                fan_in = p[0].numel()
                gain = OUT_GAIN if name == "decoder.conv_out.weight" else 1.0
                p.copy_(gain * r / fan_in**0.5)
            else:
                raise RuntimeError(f"no init rule for {name} {tuple(p.shape)}")
    return model


def decoder_state(model):
    return {k: v.detach().clone().contiguous() for k, v in sorted(model.state_dict().items())
            if k.startswith("decoder.") or k.startswith("post_quant_conv.")}


def write_checkpoint(model, out):
    folder = os.path.join(out, "tiny_vae")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    cfg = dict(model.config)
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    cfg["_class_name"] = "AutoencoderKLWan"
    cfg["_diffusers_version"] = diffusers.__version__
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2, sort_keys=True, default=list)
        f.write("\n")
    state = decoder_state(model)
    path = os.path.join(folder, "diffusion_pytorch_model.safetensors")
    save_file(state, path, metadata={"format": "pt"})
    # The file holds exactly these tensors, bit for bit.
    back = load_file(path)
    assert sorted(back) == sorted(state)
    for k in state:
        assert torch.equal(back[k], state[k]), k
    return state


# ----------------------------------------------------------------------------------------------------------------
# A separate whole-sequence decoder (spec §4.2-4.4), float64, written from the spec with torch.nn.functional:
# every cached conv is one causal conv over the whole sequence with 2 leading zero frames; a temporal upsampler
# passes frame 0 through spatially only and runs time_conv over frames 1.. (2 leading zero frames). If the
# frame-by-frame cache of diffusers is right, both agree.

def causal_conv(x, w, b, pad_hw):
    kt = w.shape[2]
    x = F.pad(x, (pad_hw, pad_hw, pad_hw, pad_hw, kt - 1, 0))
    return F.conv3d(x, w, b)


def rms_norm(x, gamma):
    return F.normalize(x, dim=1) * x.shape[1] ** 0.5 * gamma


def residual(x, s, p):
    h = causal_conv(x, s[p + "conv_shortcut.weight"], s[p + "conv_shortcut.bias"], 0) \
        if p + "conv_shortcut.weight" in s else x
    y = causal_conv(F.silu(rms_norm(x, s[p + "norm1.gamma"])), s[p + "conv1.weight"], s[p + "conv1.bias"], 1)
    y = causal_conv(F.silu(rms_norm(y, s[p + "norm2.gamma"])), s[p + "conv2.weight"], s[p + "conv2.bias"], 1)
    return y + h


def attention(x, s, p):
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    n = rms_norm(frames, s[p + "norm.gamma"])
    qkv = F.conv2d(n, s[p + "to_qkv.weight"], s[p + "to_qkv.bias"]).reshape(b * t, 3 * c, h * w).transpose(1, 2)
    q, k, v = qkv[..., :c], qkv[..., c:2 * c], qkv[..., 2 * c:]
    a = torch.softmax(q @ k.transpose(1, 2) / c**0.5, dim=-1) @ v
    y = F.conv2d(a.transpose(1, 2).reshape(b * t, c, h, w), s[p + "proj.weight"], s[p + "proj.bias"])
    return x + y.reshape(b, t, c, h, w).permute(0, 2, 1, 3, 4)


def spatial_up(x, s, p):
    b, c, t, h, w = x.shape
    frames = x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    frames = frames.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    y = F.conv2d(frames, s[p + "resample.1.weight"], s[p + "resample.1.bias"], padding=1)
    return y.reshape(b, t, -1, 2 * h, 2 * w).permute(0, 2, 1, 3, 4)


def temporal_up(x, s, p):
    first, rest = x[:, :, :1], x[:, :, 1:]
    if rest.shape[2] == 0:
        return spatial_up(first, s, p)
    y = causal_conv(rest, s[p + "time_conv.weight"], s[p + "time_conv.bias"], 0)  # [b, 2c, t-1, h, w]
    b, c2, t, h, w = y.shape
    y = y.reshape(b, 2, c2 // 2, t, h, w).permute(0, 2, 3, 1, 4, 5).reshape(b, c2 // 2, 2 * t, h, w)
    return spatial_up(torch.cat([first, y], dim=2), s, p)


def whole_sequence_decode(s, z, cfg):
    x = causal_conv(z, s["post_quant_conv.weight"], s["post_quant_conv.bias"], 0)
    x = causal_conv(x, s["decoder.conv_in.weight"], s["decoder.conv_in.bias"], 1)
    x = residual(x, s, "decoder.mid_block.resnets.0.")
    x = attention(x, s, "decoder.mid_block.attentions.0.")
    x = residual(x, s, "decoder.mid_block.resnets.1.")
    up_temporal = cfg["temperal_downsample"][::-1]
    for i in range(len(cfg["dim_mult"])):
        for r in range(cfg["num_res_blocks"] + 1):
            x = residual(x, s, f"decoder.up_blocks.{i}.resnets.{r}.")
        if i + 1 < len(cfg["dim_mult"]):
            p = f"decoder.up_blocks.{i}.upsamplers.0."
            x = temporal_up(x, s, p) if up_temporal[i] else spatial_up(x, s, p)
    x = F.silu(rms_norm(x, s["decoder.norm_out.gamma"]))
    x = causal_conv(x, s["decoder.conv_out.weight"], s["decoder.conv_out.bias"], 1)
    return x.clamp(-1, 1)


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


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
    state = write_checkpoint(model, out)
    n_params = sum(v.numel() for v in state.values())
    log(f"tiny VAE decoder: {len(state)} tensors, {n_params} parameters (post_quant_conv + decoder)")

    g = torch.Generator().manual_seed(SEED_INPUTS)
    latents = torch.randn(LATENT_SHAPE, generator=g, dtype=torch.float32)  # normalised, as the DiT produces
    mean = torch.tensor(model.config.latents_mean, dtype=torch.float64).view(-1, 1, 1, 1)
    std = torch.tensor(model.config.latents_std, dtype=torch.float64).view(-1, 1, 1, 1)
    z64 = (latents.double() * std + mean)[None]  # diffusers' decode input (un-normalised)

    with torch.no_grad():
        model64 = AutoencoderKLWan(**TINY_VAE_CONFIG).double().eval()
        model64.load_state_dict(model.state_dict())
        frames64 = model64.decode(z64).sample[0]  # [3, F, H, W]
        frames32 = model.decode(z64.float()).sample[0]
        s64 = {k: v.double() for k, v in state.items()}
        whole = whole_sequence_decode(s64, z64, TINY_VAE_CONFIG)[0]
        # Causality: decoding the first two latent frames gives the first 1 + 4 frames.
        prefix = model64.decode(z64[:, :, :2]).sample[0]
    expected_frames = 1 + 4 * (LATENT_SHAPE[1] - 1)
    assert frames64.shape == (3, expected_frames, LATENT_SHAPE[2] * 8, LATENT_SHAPE[3] * 8), frames64.shape
    err_whole = rel_l2(whole, frames64)
    err_f32 = rel_l2(frames32, frames64)
    err_prefix = float((prefix - frames64[:, :5]).abs().max())
    clamped = float((frames64.abs() >= 1).double().mean())
    log(f"frames {tuple(frames64.shape)}: std {frames64.std():.3f}, clamped share {clamped:.4f}")
    log(f"whole-sequence float64 decode vs diffusers chunked decode: relative L2 {err_whole:.2e}")
    log(f"diffusers float32 vs float64: relative L2 {err_f32:.2e}; 2-frame prefix max |diff| {err_prefix:.1e}")
    assert err_whole < 1e-6, err_whole
    assert err_prefix < 1e-12, err_prefix
    assert clamped < 0.05, clamped

    path = os.path.join(out, "vae_decode.h5")
    with h5py.File(path, "w", track_order=False) as f:
        f.create_dataset("latents", data=latents.numpy(), track_times=False)
        f.create_dataset("frames", data=frames64.float().numpy(), track_times=False)
        f.attrs["model"] = "tiny_vae (tiny_vae/, decoder tensors only)"
        f.attrs["vae_config"] = json.dumps(TINY_VAE_CONFIG, sort_keys=True)
        f.attrs["latent_convention"] = "latents are normalised; diffusers decoded z = latents*std + mean"
        f.attrs["versions"] = json.dumps(versions, sort_keys=True)
        f.attrs["whole_sequence_f64_rel_l2"] = err_whole
        f.attrs["diffusers_f32_vs_f64_rel_l2"] = err_f32
        f.attrs["clamped_share"] = clamped

    log("\nfiles:")
    total = 0
    for p in [os.path.join(out, "tiny_vae", "config.json"),
              os.path.join(out, "tiny_vae", "diffusion_pytorch_model.safetensors"), path]:
        total += os.path.getsize(p)
        log(f"  {os.path.relpath(p, out):50s} {os.path.getsize(p):9d}  "
            f"sha256 {hashlib.sha256(open(p, 'rb').read()).hexdigest()[:16]}")
    log(f"  total {total} bytes")


if __name__ == "__main__":
    main()
