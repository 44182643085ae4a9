"""Benchmark our Wan VAEs against diffusers' AutoencoderKLWan on the same random weights (GPU).

    python benchmarks/bench_vae.py --version 2.1 --frames 81 --size 832x480
    python benchmarks/bench_vae.py --version 2.2 --frames 121 --size 1280x704

Both models get the released widths (2.1: 96; 2.2: 160/256) with diffusers' random
init; ours is loaded from diffusers' state dict through ``wan_core.load_vae``. Prints
time per encode/decode, peak memory, ratios ours/diffusers and the relative error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import rel, time_cuda  # noqa: E402

CONFIGS = {
    "2.1": dict(base_dim=96, z_dim=16),
    "2.2": dict(
        base_dim=160,
        decoder_base_dim=256,
        z_dim=48,
        is_residual=True,
        in_channels=12,
        out_channels=12,
        patch_size=2,
        scale_factor_spatial=16,
        scale_factor_temporal=4,
    ),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", choices=sorted(CONFIGS), default="2.1")
    p.add_argument("--frames", type=int, default=81)
    p.add_argument("--size", default="832x480")
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp32"])
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("ERROR: this benchmark needs a CUDA GPU.")
        return 2
    from diffusers import AutoencoderKLWan

    import wan_core

    dev, dtype = torch.device("cuda"), (torch.bfloat16 if args.dtype == "bf16" else torch.float32)
    width, height = (int(v) for v in args.size.lower().split("x"))
    torch.manual_seed(0)
    ref = AutoencoderKLWan(**CONFIGS[args.version]).to(dev, dtype).eval().requires_grad_(False)
    ours = wan_core.load_vae(ref.state_dict(), device=dev, dtype=dtype)
    video = torch.rand(1, 3, args.frames, height, width, device=dev) * 2 - 1
    mean, std = ours.latent_mean.to(dev).view(1, -1, 1, 1, 1), ours.latent_std.to(dev).view(1, -1, 1, 1, 1)
    print(
        f"VAE {args.version} {args.dtype}: video {args.frames}x{height}x{width}; torch {torch.__version__}; "
        f"{torch.cuda.get_device_name(dev)}"
    )
    with torch.no_grad():
        t_ours, m_ours, z_ours = time_cuda(lambda: ours.encode(video), args.runs)
        t_ref, m_ref, mu_ref = time_cuda(lambda: ref.encode(video.to(dtype)).latent_dist.mean, args.runs)
        err = rel(z_ours, (mu_ref.float() - mean) / std)
        print(
            f"encode: ours {t_ours / 1000:.2f} s (peak {m_ours:.1f} GiB), diffusers {t_ref / 1000:.2f} s (peak {m_ref:.1f} GiB), "
            f"ratio {t_ours / t_ref:.3f}, rel err {err:.2e}"
        )
        z = torch.randn_like(z_ours)
        t_ours, m_ours, x_ours = time_cuda(lambda: ours.decode(z), args.runs)
        t_ref, m_ref, x_ref = time_cuda(lambda: ref.decode((z * std + mean).to(dtype)).sample, args.runs)
        err = rel(x_ours, x_ref.float().clamp(-1, 1))
        print(
            f"decode: ours {t_ours / 1000:.2f} s (peak {m_ours:.1f} GiB), diffusers {t_ref / 1000:.2f} s (peak {m_ref:.1f} GiB), "
            f"ratio {t_ours / t_ref:.3f}, rel err {err:.2e}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
