"""Images/s and peak memory of one DINO / Deformable DETR training step, on CPU and (when present) GPU.

A step is what Lightning runs per batch in `dino train` / `deformable_detr train`: forward of
`DetrLightningModule` (4-channel input, DINO's denoising queries from the targets), the spec's
weighted set-criterion loss, backward, gradient clipping to train.clip_grad_norm, and the step of
the optimizer `configure_optimizers` builds (AdamW with the backbone / linear-projection groups).
Activation checkpointing follows the spec (train.activation_checkpoint, default on) unless
--activation-checkpoint says otherwise. fp32 throughout.

Data: the spec's own train pipeline (dataset.train_data_sources, dataset.augmentation, seed
--seed, batch --batch-size), pre-fetched before timing; every repeat replays the same batches, so
data loading is excluded and every repeat sees identical image shapes.

Method: each repeat is a fresh Python process (so one variant's heap never inflates another's
figures) that builds the model, runs --warmup steps (excluded), then times --steps steps.
Repeats are alternated across the variants (network x device), the order rotated each round.
    images_per_s    batch * steps / time of the timed steps (GPU: synchronised)
    CPU memory      peak RSS (VmHWM of /proc/self/status, reset through /proc/self/clear_refs
                    after the warm-up) during the timed steps: `peak_rss_mib` is the absolute
                    process peak, `step_rss_mib` that peak minus the RSS before the timed steps
                    (what a step adds on top of model, optimizer state and the Python/torch runtime).
                    Without clear_refs: ru_maxrss, a whole-process peak (warm-up included).
    GPU memory      torch.cuda.max_memory_allocated over the timed steps (`peak_alloc_mib`) and the
                    same minus memory_allocated before them (`step_alloc_mib`).
    phases_s        per-phase time of a step, mean over the timed steps (GPU: synchronised at each
                    phase boundary): data (fetching the batch from the spec's DataLoader, measured
                    while pre-fetching; 0 with --synthetic), forward (model), loss (matcher + set
                    criterion + weighted sum), backward (loss.backward + gradient clipping),
                    optimizer (zero_grad + step)
Reported per variant: median and min-max over repeats.

Variants: network x device x MSDA kernel (--msda-kernels, default "auto": the module default;
e.g. `--msda-kernels pytorch auto` compares the grid_sample core with the sparse CPU kernel)
x backbone (--backbones, default the spec's; e.g. `--backbones resnet_50 gc_vit_xxtiny`).

--synthetic HxWxB (e.g. 320x320x3): instead of the spec's data, fixed random batches of
--batch-size images of H x W with B random boxes each (the shapes of a benchmark that states them).

A spec written for DINO also works for --network deformable_detr: the model keys Deformable DETR
does not have (dn_number, ...) are dropped and listed in the output.

Usage:
    python benchmarks/train_step.py                                   # DINO, demo spec, CPU (+GPU)
    python benchmarks/train_step.py --network both --device cpu --repeats 3 --steps 8
    python benchmarks/train_step.py --spec my.yaml --network deformable_detr --batch-size 2 model.num_queries=100
    python benchmarks/train_step.py --spec benchmarks/specs/r50_4level_320.yaml --network both --device cpu \
        --batch-size 2 --synthetic 320x320x3 --activation-checkpoint off --msda-kernels pytorch auto
Prints one JSON object. Run from anywhere; relative paths in the spec are read from the repo root.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = REPO / "examples" / "specs" / "dino_raccoon.yaml"
NETWORKS = ("dino", "deformable_detr")
MIB = 1024 * 1024


# ----------------------------------------------------------------------------- memory probes


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_hwm() -> bool:
    """Reset the peak RSS (VmHWM) of this process to its current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_mib() -> float:
    kib = _proc_status_kib("VmRSS")
    return kib / 1024 if kib is not None else float("nan")


def _peak_rss_mib(hwm_reset: bool) -> tuple[float, str]:
    kib = _proc_status_kib("VmHWM")
    if hwm_reset and kib is not None:
        return kib / 1024, "VmHWM (reset after warm-up)"
    # ru_maxrss: KiB on Linux, bytes on macOS; a whole-process peak
    ru = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return (ru / MIB if sys.platform == "darwin" else ru / 1024), "ru_maxrss (whole process)"


# ----------------------------------------------------------------------------- spec


def load_cfg(network: str, spec: str, overrides: list[str]):
    """The train spec of `network`; model keys the network's schema lacks are dropped."""
    from tao_core.spec.yaml_io import read_yaml_file
    from tao_core.specs import get_spec

    schema = get_spec(network)
    data = read_yaml_file(spec)
    known = set(schema.defaults("train").model.keys())
    model = data.get("model") or {}
    dropped = sorted(k for k in model if k not in known)
    for k in dropped:
        model.pop(k)
    text = json.dumps(data)  # JSON is YAML
    return schema.load("train", overrides=overrides, text=text), dropped


# ----------------------------------------------------------------------------- one repeat (child)


def _to_device(batch, device):
    images, mask, targets = batch
    moved = [{k: v.to(device) if hasattr(v, "to") else v for k, v in t.items()} for t in targets]
    return images.to(device), mask.to(device), moved


def _synthetic_batches(args, cfg, count: int) -> list:
    """`count` fixed random batches: --batch-size images of H x W, B boxes each (--synthetic HxWxB)."""
    import torch

    h, w, n_boxes = (int(x) for x in args.synthetic.lower().split("x"))
    batch = args.batch_size or int(cfg.dataset.batch_size)
    g = torch.Generator().manual_seed(args.seed)
    batches = []
    for _ in range(count):
        images = torch.randn(batch, 3, h, w, generator=g)
        mask = torch.zeros(batch, h, w, dtype=torch.bool)
        targets = []
        for _ in range(batch):
            centre = torch.rand(n_boxes, 2, generator=g) * 0.6 + 0.2
            size = torch.rand(n_boxes, 2, generator=g) * 0.3 + 0.05
            labels = torch.randint(1, int(cfg.dataset.num_classes), (n_boxes,), generator=g)
            targets.append({"labels": labels, "boxes": torch.cat([centre, size], 1),
                            "orig_size": torch.tensor([h, w]), "size": torch.tensor([h, w])})
        batches.append((images, mask, targets))
    return batches


def measure(args) -> dict:
    """Build, warm up and time one variant in this process."""
    os.chdir(REPO)  # spec paths are relative to the repository root
    import torch

    from tao_pytorch.detr.data.loader import build_dataloader
    from tao_pytorch.detr.lightning_module import DetrLightningModule
    from tao_pytorch.detr.network import detr_network

    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = list(args.overrides) + [f"train.seed={args.seed}", "dataset.workers=0"]
    if args.batch_size:
        overrides.append(f"dataset.batch_size={args.batch_size}")
    if args.activation_checkpoint != "spec":
        overrides.append(f"train.activation_checkpoint={args.activation_checkpoint == 'on'}")
    cfg, _ = load_cfg(args.network, args.spec, overrides)
    device = torch.device(args.device)

    torch.manual_seed(args.seed)
    import random

    random.seed(args.seed)
    data_times = []
    if args.synthetic:
        batches = _synthetic_batches(args, cfg, args.warmup + args.steps)
    else:
        loader = build_dataloader(cfg.dataset, "train", seed=args.seed)
        batches, it = [], iter(loader)
        while len(batches) < args.warmup + args.steps:
            t = time.perf_counter()
            try:
                batches.append(next(it))
            except StopIteration:
                it = iter(loader)
                continue
            data_times.append(time.perf_counter() - t)
    batches = [_to_device(b, device) for b in batches]
    batch_size = int(batches[0][0].shape[0])
    shapes = sorted({tuple(b[0].shape[-2:]) for b in batches[args.warmup:]})

    module = DetrLightningModule(detr_network(args.network), cfg).to(device)
    module.train()
    if args.msda_kernel != "auto":
        from tao_pytorch.detr.msda import MSDeformAttn

        for m in module.modules():
            if isinstance(m, MSDeformAttn):
                m.kernel = args.msda_kernel
    optimizer = module.configure_optimizers()["optimizer"]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    clip = float(cfg.train.clip_grad_norm)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    phase_names = ("forward", "loss", "backward", "optimizer")
    phase_totals = dict.fromkeys(phase_names, 0.0)

    def step(batch, timed=False):
        marks = [time.perf_counter()]

        def mark():
            if timed:
                sync()
                marks.append(time.perf_counter())

        images, mask, targets = batch
        outputs = module(images, mask, targets)
        mark()
        loss, _ = module._loss(outputs, targets)
        mark()
        loss.backward()
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(params, clip)
        mark()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        mark()
        if timed:
            for name, a, b in zip(phase_names, marks, marks[1:]):
                phase_totals[name] += b - a
        return loss

    for b in batches[: args.warmup]:
        step(b)
    sync()

    hwm_reset = device.type == "cpu" and _reset_hwm()
    rss_before = _rss_mib()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        alloc_before = torch.cuda.memory_allocated(device) / MIB
    step_times = []
    loss = None
    t_all = time.perf_counter()
    for b in batches[args.warmup:]:
        t = time.perf_counter()
        loss = step(b, timed=True)
        sync()
        step_times.append(time.perf_counter() - t)
    total = time.perf_counter() - t_all
    phases = {"data": statistics.mean(data_times) if data_times else 0.0}
    phases.update({k: v / args.steps for k, v in phase_totals.items()})

    out = {
        "images_per_s": batch_size * args.steps / total,
        "step_s_mean": total / args.steps,
        "step_s_min": min(step_times),
        "step_s_max": max(step_times),
        "batch_size": batch_size,
        "input_hw": [f"{h}x{w}" for h, w in shapes],
        "final_loss": float(loss.detach()),
        "load_avg_1m": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
        "activation_checkpoint": bool(cfg.train.activation_checkpoint),
        "phases_s": phases,
    }
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / MIB
        out.update(peak_alloc_mib=peak, step_alloc_mib=peak - alloc_before, device_name=torch.cuda.get_device_name())
    else:
        peak, how = _peak_rss_mib(hwm_reset)
        out.update(peak_rss_mib=peak, step_rss_mib=peak - rss_before, rss_method=how)
    return out


# ----------------------------------------------------------------------------- orchestration (parent)


def _summary(values: list[float], digits: int = 2) -> dict:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spec", default=str(DEFAULT_SPEC), help="experiment spec (default: the demo DINO spec)")
    ap.add_argument("--network", default="dino", choices=[*NETWORKS, "both"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "both"],
                    help="auto/both: CPU, and CUDA when available; cpu; cuda")
    ap.add_argument("--batch-size", type=int, help="default: dataset.batch_size of the spec")
    ap.add_argument("--steps", type=int, default=8, help="timed steps per repeat (default 8)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps before them (default 2)")
    ap.add_argument("--repeats", type=int, default=3, help="fresh processes per variant, alternated (default 3)")
    ap.add_argument("--threads", type=int, help="torch intra-op threads on CPU (default: torch's choice)")
    ap.add_argument("--activation-checkpoint", default="spec", choices=["spec", "on", "off"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--msda-kernels", nargs="+", default=["auto"],
                    help="MSDA kernels to compare (names of tao_pytorch.detr.msda.MSDA_KERNELS, or auto)")
    ap.add_argument("--backbones", nargs="+", default=[None],
                    help="backbones to compare (model.backbone values, e.g. resnet_50 gc_vit_xxtiny); default: the spec's")
    ap.add_argument("--synthetic", help="HxWxB: random batches of HxW images with B boxes each, not the spec's data")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--msda-kernel", default="auto", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*", help="dotted key=value spec overrides, e.g. model.num_queries=100")
    args = ap.parse_args()
    args.spec = str(Path(args.spec).resolve())

    if args.child:
        print(json.dumps(measure(args)))
        return

    import torch

    cuda = torch.cuda.is_available()
    if args.device == "cuda" and not cuda:
        sys.exit("--device cuda: torch sees no CUDA device")
    devices = {"cpu": ["cpu"], "cuda": ["cuda"]}.get(args.device, ["cpu", "cuda"] if cuda else ["cpu"])
    networks = NETWORKS if args.network == "both" else (args.network,)
    variants = [(n, d, k, b) for n in networks for d in devices for k in args.msda_kernels for b in args.backbones]
    dropped = {n: load_cfg(n, args.spec, list(args.overrides))[1] for n in networks}

    runs: dict[tuple[str, str, str, str | None], list[dict]] = {v: [] for v in variants}
    t_start = time.perf_counter()
    for r in range(args.repeats):
        order = variants[r % len(variants):] + variants[: r % len(variants)]
        for network, device, kernel, backbone in order:
            cmd = [sys.executable, __file__, "--child", "--spec", args.spec, "--network", network, "--device", device,
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--seed", str(args.seed),
                   "--activation-checkpoint", args.activation_checkpoint, "--msda-kernel", kernel]
            if args.synthetic:
                cmd += ["--synthetic", args.synthetic]
            if args.batch_size:
                cmd += ["--batch-size", str(args.batch_size)]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            cmd += list(args.overrides) + ([f"model.backbone={backbone}"] if backbone else [])
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                sys.stderr.write(proc.stderr)
                sys.exit(f"repeat {r} of {network}/{device}/{kernel}/{backbone} failed (exit {proc.returncode})")
            rec = json.loads(proc.stdout.strip().splitlines()[-1])
            rec["process_s"] = time.perf_counter() - t
            runs[(network, device, kernel, backbone)].append(rec)
            print(f"repeat {r} {network}/{device}/msda={kernel}/{backbone or 'spec'}: {rec['images_per_s']:.2f} img/s, "
                  f"{rec['step_s_mean']:.2f} s/step", file=sys.stderr, flush=True)

    result = {
        "spec": os.path.relpath(args.spec, REPO) if args.spec.startswith(str(REPO)) else args.spec,
        "overrides": list(args.overrides),
        "synthetic": args.synthetic,
        "steps": args.steps, "warmup": args.warmup, "repeats": args.repeats, "seed": args.seed,
        "host": {"cpus": os.cpu_count(), "torch": torch.__version__, "cuda": cuda},
        "wall_s": round(time.perf_counter() - t_start, 1),
        "results": {},
    }
    for (network, device, kernel, backbone), recs in runs.items():
        first = recs[0]
        entry = {
            "images_per_s": _summary([x["images_per_s"] for x in recs]),
            "step_s": _summary([x["step_s_mean"] for x in recs], 3),
            "phases_s": {k: _summary([x["phases_s"][k] for x in recs], 3) for k in first["phases_s"]},
            "msda_kernel": kernel,
            "batch_size": first["batch_size"],
            "input_hw": first["input_hw"],
            "activation_checkpoint": first["activation_checkpoint"],
            "final_loss": round(first["final_loss"], 3),
            "load_avg_1m": [round(x["load_avg_1m"], 2) for x in recs],
            "process_s": [round(x["process_s"], 1) for x in recs],
        }
        if device == "cuda":
            entry["peak_alloc_mib"] = _summary([x["peak_alloc_mib"] for x in recs], 1)
            entry["step_alloc_mib"] = _summary([x["step_alloc_mib"] for x in recs], 1)
            entry["device_name"] = first["device_name"]
        else:
            entry["peak_rss_mib"] = _summary([x["peak_rss_mib"] for x in recs], 1)
            entry["step_rss_mib"] = _summary([x["step_rss_mib"] for x in recs], 1)
            entry["rss_method"] = first["rss_method"]
            entry["threads"] = first["threads"]
        if dropped[network]:
            entry["spec_model_keys_dropped"] = dropped[network]
        name = device if len(args.msda_kernels) == 1 else f"{device}/msda={kernel}"
        if backbone:
            entry["backbone"] = backbone
            name += f"/{backbone}"
        result["results"].setdefault(network, {})[name] = entry
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
