"""Forward, backward and memory of each multi-scale deformable attention kernel (MSDA_KERNELS).

Shapes (defaults: the issue's): value (N, S, M, D) with levels of a 320x320 input at strides
8/16/32/64 (40x40, 20x20, 10x10, 5x5: S = 2125), N = 2, M = 8 heads, D = 32, P = 4 points;
    encoder   Lq = S (every pixel queries)        decoder   Lq = --decoder-queries (100, 900)
Inputs are random: locations uniform in [-0.1, 1.1] (some corners off the map), attention
weights softmax-normalised, a random output gradient.

Speed: every repeat runs every kernel once per shape, one after the other (alternating, order
rotated each repeat), each as the median of --iters calls after one warm-up:
    forward_ms   the kernel under torch.no_grad (inference)
    train_ms     forward with autograd + backward to value, locations and attention weights
    backward_ms  train_ms minus the forward-with-autograd time of the same calls
Reported: median and min-max over --repeats.

Memory (each kernel and shape in a fresh process, so heaps never mix):
    saved_mib     what autograd keeps between forward and backward (unique storages packed by
                  saved_tensors_hooks): the per-layer activation cost in training
    peak_rss_mib  peak RSS of one forward + backward above the RSS before it (VmHWM reset through
                  /proc/self/clear_refs; Linux)
On CUDA (--device cuda): torch.cuda.max_memory_allocated above the allocation before, instead.

Usage:
    python benchmarks/msda.py                         # all kernels, encoder + decoder 100 / 900
    python benchmarks/msda.py --threads 1 --repeats 5 --kernels pytorch sparse_cpu
Prints one JSON object; progress on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import _peak_rss_mib, _reset_hwm, _rss_mib  # noqa: E402 (one copy of the RSS probes)

LEVELS = [(40, 40), (20, 20), (10, 10), (5, 5)]
MIB = 1024 * 1024


def make_inputs(lq: int, device: str, dtype, seed: int = 0, batch: int = 2, heads: int = 8, dim: int = 32,
                points: int = 4):
    import torch

    g = torch.Generator().manual_seed(seed)
    s = sum(h * w for h, w in LEVELS)
    n_levels = len(LEVELS)
    value = torch.randn(batch, s, heads, dim, generator=g)
    loc = torch.rand(batch, lq, heads, n_levels, points, 2, generator=g) * 1.2 - 0.1
    attn = torch.rand(batch, lq, heads, n_levels * points, generator=g).softmax(-1)
    attn = attn.view(batch, lq, heads, n_levels, points)
    grad = torch.randn(batch, lq, heads * dim, generator=g)
    starts = torch.tensor([0] + [h * w for h, w in LEVELS[:-1]]).cumsum(0)
    moved = [t.to(device=device, dtype=dtype) for t in (value, loc, attn, grad)]
    return (*moved, torch.tensor(LEVELS, device=device), starts.to(device))


def shapes_of(args) -> dict[str, int]:
    s = sum(h * w for h, w in LEVELS)
    return {"encoder": s, **{f"decoder_{q}": q for q in args.decoder_queries}}


def _sync(device: str):
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def time_kernel(fn, inputs, iters: int, device: str) -> dict[str, float]:
    import torch

    value, loc, attn, grad, shapes, starts = inputs
    leaves = [t.detach().clone().requires_grad_() for t in (value, loc, attn)]

    def infer():
        with torch.no_grad():
            fn(value, shapes, starts, loc, attn)

    def forward():
        return fn(leaves[0], shapes, starts, leaves[1], leaves[2])

    def train():
        torch.autograd.grad(forward(), leaves, grad)

    out = {}
    for name, call in (("forward_ms", infer), ("forward_autograd_ms", forward), ("train_ms", train)):
        call()  # warm-up
        _sync(device)
        times = []
        for _ in range(iters):
            t = time.perf_counter()
            call()
            _sync(device)
            times.append((time.perf_counter() - t) * 1e3)
        out[name] = statistics.median(times)
    out["backward_ms"] = out["train_ms"] - out.pop("forward_autograd_ms")
    return out


def memory_child(args) -> dict:
    """One kernel, one shape, in this (fresh) process: saved tensors and peak memory of fwd + bwd."""
    import torch

    from tao_pytorch.detr.msda import MSDA_KERNELS

    if args.threads:
        torch.set_num_threads(args.threads)
    fn = MSDA_KERNELS[args.kernel]
    dtype = getattr(torch, args.dtype)
    value, loc, attn, grad, shapes, starts = make_inputs(args.lq, args.device, dtype)
    leaves = [t.requires_grad_() for t in (value, loc, attn)]
    saved: dict[int, int] = {}

    def pack(t):
        st = t.untyped_storage()
        saved[st.data_ptr()] = st.nbytes()
        return t

    # one untimed round first, so one-off allocations (thread pools, MKL buffers) are not counted
    torch.autograd.grad(fn(leaves[0], shapes, starts, leaves[1], leaves[2]), leaves, grad)
    _sync(args.device)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    hwm = args.device == "cpu" and _reset_hwm()
    rss_before = _rss_mib()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn(leaves[0], shapes, starts, leaves[1], leaves[2])
    torch.autograd.grad(out, leaves, grad)
    _sync(args.device)
    rec = {"saved_mib": sum(saved.values()) / MIB}
    if args.device == "cuda":
        rec["peak_alloc_mib"] = (torch.cuda.max_memory_allocated() - before) / MIB
    else:
        peak, how = _peak_rss_mib(hwm)
        rec["peak_rss_mib"] = peak - rss_before
        rec["rss_method"] = how
    return rec


def _summary(values: list[float], digits: int = 1) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kernels", nargs="*", help="default: every registered kernel that runs on --device")
    ap.add_argument("--decoder-queries", nargs="*", type=int, default=[100, 900])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iters", type=int, default=3, help="calls per timing, median taken (default 3)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--no-memory", action="store_true", help="skip the per-process memory figures")
    ap.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--kernel", help=argparse.SUPPRESS)
    ap.add_argument("--lq", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.memory_child:
        print(json.dumps(memory_child(args)))
        return

    import torch

    from tao_pytorch.detr.msda import MSDA_KERNELS

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device")
    # the TensorRT plugin kernel computes the PyTorch core in eager mode: same figures, not repeated
    default = [k for k in MSDA_KERNELS if k != "trt_plugin" and not (args.device == "cuda" and k == "sparse_cpu")]
    kernels = args.kernels or default
    unknown = [k for k in kernels if k not in MSDA_KERNELS]
    if unknown:
        sys.exit(f"unknown kernels {unknown}; registered: {sorted(MSDA_KERNELS)}")
    dtype = getattr(torch, args.dtype)
    shapes = shapes_of(args)
    inputs = {name: make_inputs(lq, args.device, dtype) for name, lq in shapes.items()}

    runs = {(s, k): [] for s in shapes for k in kernels}
    t0 = time.perf_counter()
    for r in range(args.repeats):
        order = kernels[r % len(kernels):] + kernels[: r % len(kernels)]
        for shape in shapes:
            for kernel in order:
                rec = time_kernel(MSDA_KERNELS[kernel], inputs[shape], args.iters, args.device)
                runs[(shape, kernel)].append(rec)
                print(f"repeat {r} {shape} {kernel}: train {rec['train_ms']:.1f} ms", file=sys.stderr, flush=True)

    memory = {}
    if not args.no_memory:
        for shape, lq in shapes.items():
            for kernel in kernels:
                cmd = [sys.executable, __file__, "--memory-child", "--kernel", kernel, "--lq", str(lq),
                       "--device", args.device, "--dtype", args.dtype]
                if args.threads:
                    cmd += ["--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode:
                    sys.stderr.write(proc.stderr)
                    sys.exit(f"memory run of {kernel} at {shape} failed (exit {proc.returncode})")
                memory[(shape, kernel)] = json.loads(proc.stdout.strip().splitlines()[-1])

    results: dict = {}
    for (shape, kernel), recs in runs.items():
        entry = {key: _summary([x[key] for x in recs]) for key in ("forward_ms", "backward_ms", "train_ms")}
        if (shape, kernel) in memory:
            entry.update({k: (round(v, 1) if isinstance(v, float) else v) for k, v in memory[(shape, kernel)].items()})
        results.setdefault(shape, {"lq": shapes[shape]})[kernel] = entry
    base = "pytorch" if "pytorch" in kernels else None
    if base:
        for entries in results.values():
            for kernel in kernels:
                if kernel == base:
                    continue
                entries[kernel]["speedup_vs_pytorch"] = {
                    key: round(entries[base][key]["median"] / entries[kernel][key]["median"], 2)
                    for key in ("forward_ms", "backward_ms", "train_ms")
                }
    print(json.dumps({
        "levels": LEVELS, "batch": 2, "heads": 8, "head_dim": 32, "points": 4,
        "device": args.device, "dtype": args.dtype, "threads": torch.get_num_threads(),
        "repeats": args.repeats, "iters": args.iters, "torch": torch.__version__, "cpus": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2), "wall_s": round(time.perf_counter() - t0, 1),
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
