"""Self-attention of the mesh transformer on CPU: torch's fused kernel against two GEMMs + softmax.

    python bench/attention.py                 # 1 and 2 threads, fp32 and bf16, the presets' head widths
    python bench/attention.py --batch 1 8 --threads 1

Shapes are those of the mesh network's BERT layers: 445 tokens, 4 heads, head width 256 / 64 / 32
(official blocks 1-3) and 16 / 8 (small). Prints the median microseconds of each form, their ratio and the
largest difference from the float32 fused result; ``MeshNetwork`` takes the unfused form where this
shows it faster (CPU bf16 inference: ``mesh_network._unfused_attention_is_faster``).
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
import torch.nn.functional as F

TOKENS, HEADS = 445, 4
HEAD_DIMS = (256, 64, 32, 16, 8)


def unfused(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(D)) v with two GEMMs; (B, H, N, D) -> (B, H, N, D)."""
    return torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2), dim=-1) @ v


def median_us(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in microseconds after 3 warm-up calls."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e6


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", nargs="+", type=int, default=[1, 8])
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    print("| threads | batch | head width | dtype | fused us | unfused us | fused / unfused | max diff vs fp32 |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|")
    with torch.inference_mode():
        for threads in args.threads:
            torch.set_num_threads(threads)
            for batch in args.batch:
                for dim in HEAD_DIMS:
                    g = torch.Generator().manual_seed(dim)
                    q, k, v = (torch.randn(batch, HEADS, TOKENS, dim, generator=g) for _ in range(3))
                    ref = F.scaled_dot_product_attention(q, k, v)
                    for dtype in (torch.float32, torch.bfloat16):
                        qd, kd, vd = (t.to(dtype) for t in (q, k, v))
                        fused = median_us(lambda: F.scaled_dot_product_attention(qd, kd, vd), args.repeats)
                        plain = median_us(lambda: unfused(qd, kd, vd), args.repeats)
                        diff = (unfused(qd, kd, vd).float() - ref).abs().max().item()
                        print(f"| {threads} | {batch} | {dim} | {str(dtype)[6:]} | {fused:.0f} | {plain:.0f} | "
                              f"{fused / plain:.2f} | {diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
