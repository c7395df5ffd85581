"""Per-stage latency, FLOP rate and peak memory of the SA-HMR pipeline, per preset, precision and persons.

    python bench/latency.py                                  # small + official, fp32 (+ bf16 where native)
    python bench/latency.py --presets small --persons 1 4 8 16 --repeats 5
    python bench/latency.py --device cuda --precisions fp32 fp16 bf16 --json latency.json
    python bench/latency.py --weights shipped --presets small  # the trained small weights

Input: the demo's synthetic room and people (no downloads), boxes repeated to N persons. With
``--weights random`` (default) RCNet's depth head is pinned to put each root about 3 m away, so the
sparse CNN sees a realistic region of interest (untrained weights would put the root anywhere);
``--weights shipped`` runs the small preset's trained weights (``sahmr_ros/weights/small_synthetic.pt``)
unpinned (the official preset has no shipped weights: random, pinned).

Per (preset, precision, persons):

* ms: the median of ``--repeats`` frames of ``FrameResult.timings_ms`` per stage, after ``--warmup``
  frames and one untimed frame that counts the FLOPs;
* GFLOP per stage, counted once per configuration by ``torch.utils.flop_counter.FlopCounterMode``
  (convolutions, mm / addmm / bmm, SDPA; a sparse matrix operand counts 2 x nnz x columns, not its
  dense size; gathers, scatters and element-wise ops count 0), attributed to stages by sub-module
  (``STAGE_MODULES``; what lies outside them counts in the total only);
* GFLOP/s = GFLOP / stage time, and its ratio to the attainable rate of the precision, measured in
  the same run: a dense 2048^3 GEMM in the precision's dtype (median of a few), measured before the
  first and after every (preset, precision) block, the best measurement counting (a 3x3
  channels_last convolution of HRNet's first stage is printed for reference). Under bf16 the sparse
  CNN multiplies bf16 operands but keeps its activations and sums in float32
  (``sahmr_ros.networks.sparse``);
* peak memory of the timed frames above the memory in use before the pipeline was built (CUDA:
  ``max_memory_allocated``; CPU: VmHWM reset through /proc/self/clear_refs, else sampled RSS).

Per preset, a table checks that per-frame time does not grow with the size of the map: the same
frame with 2 million extra map points far away. Ends with a Markdown summary (``--json OUT``: every
number). Warns when the load average says other processes share the cores.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.body import load_body_assets  # noqa: E402
from sahmr_ros.body.synthetic import write_synthetic_model_dir  # noqa: E402
from sahmr_ros.demo.run import make_demo_scene  # noqa: E402
from sahmr_ros.networks.precision import cpu_supports_bf16  # noqa: E402
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig  # noqa: E402
from sahmr_ros.pipeline import STAGES, Pipeline, PipelineConfig  # noqa: E402

TARGET_DEPTH_M = 3.0
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Sub-modules of SAHMR (model.named_modules() paths) whose forward FLOPs make up each timed stage;
# a ModuleList stands for its children. FLOPs outside them go to "other" (in the total only).
STAGE_MODULES = {
    "rcnet.root_net": "rcnet_cnn",
    "rcnet.contact_net": "sparse_cnn",
    "mesh_network.backbone": "mesh_cnn",
    "mesh_network.trans_encoder": "transformer",
    "mesh_network.upsampling": "upsampling",
    "mesh_network.upsampling2": "upsampling",
    "mesh_network.vertex_upsampling": "upsampling",  # where it exists: applies both upsampling maps
}
HRNET_CONV = (8, 64, 56, 56)  # batch, channels, H, W of a 3x3 conv of HRNet's first stage (224 crops)


# --- FLOP counting ---------------------------------------------------------------------------------
def _matmul_flops(a: torch.Tensor, b: torch.Tensor) -> int:
    """Count the FLOPs of ``a @ b`` (2 per multiply-add); a sparse operand counts its stored entries only."""
    if a.layout != torch.strided:
        return 2 * a._nnz() * b.shape[-1]
    if b.layout != torch.strided:
        return 2 * b._nnz() * a.shape[-2]
    return 2 * a.shape[-2] * a.shape[-1] * b.shape[-1]


def _mm(a, b, *args, out_val=None, **kwargs) -> int:
    return _matmul_flops(a, b)


def _addmm(bias, a, b, *args, out_val=None, **kwargs) -> int:
    return _matmul_flops(a, b)


_mm._get_raw = True  # FlopCounterMode passes the tensors themselves, not their shapes
_addmm._get_raw = True
SPARSE_AWARE_FLOPS = {torch.ops.aten.mm: _mm, torch.ops.aten.addmm: _addmm}


def count_stage_flops(model: torch.nn.Module, run, stage_modules: dict[str, str] = STAGE_MODULES
                      ) -> dict[str, int]:
    """Count the FLOPs of ``run()`` per stage, by the sub-modules of ``model`` each stage consists of.

    Args:
        model: the module whose sub-modules ``stage_modules`` names (``named_modules()`` paths).
        run: a callable doing the work (e.g. one ``Pipeline.process``).
        stage_modules: sub-module path -> stage name; a ``ModuleList`` stands for its children.
            Paths the model lacks are skipped. Nested stage modules count in the outermost one.

    Returns:
        stage -> FLOPs for every stage of ``stage_modules``, plus ``"other"`` (FLOPs outside them)
        and ``"total"``. Counted: what ``FlopCounterMode`` counts (convolutions, mm / addmm / bmm,
        SDPA), a sparse matrix operand as 2 x nnz x columns.
    """
    counter = FlopCounterMode(display=False, custom_mapping=SPARSE_AWARE_FLOPS)
    flops = dict.fromkeys(stage_modules.values(), 0)
    active: list = []  # (module, stage, total at entry); only the outermost one counts

    def pre(stage):
        def hook(module, *_):
            active.append((module, stage, counter.get_total_flops()))
        return hook

    def post(module, *_):
        mod, stage, start = active.pop()
        if not active:
            flops[stage] += counter.get_total_flops() - start

    modules = dict(model.named_modules())
    handles = []
    for path, stage in stage_modules.items():
        module = modules.get(path)
        if module is None:
            continue
        for m in (list(module) if isinstance(module, torch.nn.ModuleList) else [module]):
            handles += [m.register_forward_pre_hook(pre(stage)), m.register_forward_hook(post)]
    try:
        with counter:
            run()
    finally:
        for h in handles:
            h.remove()
    total = counter.get_total_flops()
    return {**flops, "other": total - sum(flops.values()), "total": total}


# --- attainable rate -------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _median_seconds(fn, device: torch.device, repeats: int, budget_s: float) -> float:
    fn()  # warm-up
    _sync(device)
    times: list[float] = []
    t_end = time.perf_counter() + budget_s
    while len(times) < repeats and (not times or time.perf_counter() < t_end):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def attainable_gflops(dtype: torch.dtype, device: torch.device | str = "cpu", n: int = 2048, repeats: int = 5,
                      budget_s: float = 3.0) -> float:
    """GFLOP/s of a dense ``n`` x ``n`` x ``n`` matrix product in ``dtype`` (median of ``repeats``).

    Runs with torch's current thread count; stops early after ``budget_s`` seconds (at least one timing).
    """
    device = torch.device(device)
    g = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, generator=g, device=device).to(dtype)
    b = torch.randn(n, n, generator=g, device=device).to(dtype)
    with torch.inference_mode():
        seconds = _median_seconds(lambda: a @ b, device, repeats, budget_s)
    return 2 * n**3 / seconds / 1e9


def attainable_conv_gflops(dtype: torch.dtype, device: torch.device | str = "cpu", shape=HRNET_CONV,
                           repeats: int = 5, budget_s: float = 3.0) -> float:
    """GFLOP/s of a 3x3 same-padding convolution, channels in = out, channels_last (median of ``repeats``)."""
    device = torch.device(device)
    b, c, h, w = shape
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(b, c, h, w, generator=g, device=device).to(dtype).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(c, c, 3, padding=1, bias=False).to(device=device, dtype=dtype,
                                                              memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = _median_seconds(lambda: conv(x), device, repeats, budget_s)
    return 2 * b * c * c * 9 * h * w / seconds / 1e9


# --- memory ----------------------------------------------------------------------------------------
def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of the work between :meth:`reset` and :meth:`peak_mb`, above :meth:`baseline`.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the kernel's resident high-water mark (VmHWM),
    reset by writing 5 to ``/proc/self/clear_refs``; else RSS sampled every 2 ms with psutil; else
    ``ru_maxrss`` (the process's lifetime peak: not resettable, an upper bound).
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.base = 0.0
        self._sampler: threading.Thread | None = None
        self._stop = threading.Event()
        self._sampled = 0.0
        if device.type == "cuda":
            self.method = "cuda max_memory_allocated"
        elif self._clear_refs() and _status_kb("VmHWM") is not None:
            self.method = "VmHWM (reset via /proc/self/clear_refs)"
        else:
            try:
                import psutil  # noqa: F401

                self.method = "RSS sampled every 2 ms (psutil)"
            except ImportError:
                self.method = "ru_maxrss (process lifetime peak)"

    @staticmethod
    def _clear_refs() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            return True
        except OSError:
            return False

    def current_mb(self) -> float:
        """Memory in use now, MB (CUDA: allocated by torch; CPU: resident set)."""
        if self.device.type == "cuda":
            return torch.cuda.memory_allocated(self.device) / 2**20
        rss = _status_kb("VmRSS")
        if rss is not None:
            return rss / 1024
        try:
            import psutil

            return psutil.Process().memory_info().rss / 2**20
        except ImportError:
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def baseline(self) -> None:
        """Take the memory in use now (after freeing what can be freed) as the zero of :meth:`peak_mb`."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)  # glibc: hand freed heap back to the kernel
            except (OSError, AttributeError):
                pass
        self.base = self.current_mb()

    def reset(self) -> None:
        """Start a new peak."""
        if self.method.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.method.startswith("VmHWM"):
            self._clear_refs()
        elif self.method.startswith("RSS"):
            self._sampled = self.current_mb()
            self._stop.clear()
            self._sampler = threading.Thread(target=self._sample, daemon=True)
            self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._sampled = max(self._sampled, self.current_mb())

    def peak_mb(self) -> float:
        """Peak since :meth:`reset`, minus the baseline, MB."""
        if self.method.startswith("cuda"):
            peak = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.method.startswith("VmHWM"):
            peak = _status_kb("VmHWM") / 1024
        elif self.method.startswith("RSS"):
            self._stop.set()
            self._sampler.join()
            peak = max(self._sampled, self.current_mb())
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        return peak - self.base


# --- pipeline and frames ---------------------------------------------------------------------------
def _pipeline(preset: str, weights: str, model_dir: Path, body, config: PipelineConfig) -> tuple[Pipeline, bool]:
    """Build the pipeline; also say whether its depth must be pinned (random weights)."""
    if weights == "shipped" and preset == "small":
        return Pipeline.embedded_default(model_dir, config), False
    torch.manual_seed(0)
    model = SAHMR(SAHMRConfig.from_preset(preset), body)
    return Pipeline(model, body.faces, config, f"{preset}, random"), True


def _pin_depth(pipe: Pipeline, K: np.ndarray, box_width_px: float) -> None:
    """Make the depth channel constant so that Z = TARGET_DEPTH_M for a crop of this width."""
    conv = pipe.model.rcnet.root_net.out_conv
    with torch.no_grad():
        conv.weight[1].zero_()
        conv.bias[1] = TARGET_DEPTH_M * box_width_px / K[0, 0]


def _boxes(scene, n: int) -> np.ndarray:
    reps = [scene.boxes[i % len(scene.boxes)] + (i // len(scene.boxes)) * np.array([3.0, 0, 3.0, 0])
            for i in range(n)]
    return np.array(reps)


def _measure(pipe: Pipeline, scene, boxes, repeats: int, warmup: int = 1) -> dict[str, float]:
    for _ in range(warmup):
        pipe.process(scene.image, scene.K, scene.T_map_camera, boxes)
    runs = [pipe.process(scene.image, scene.K, scene.T_map_camera, boxes).timings_ms for _ in range(repeats)]
    return {s: float(np.median([r[s] for r in runs])) for s in STAGES}


@contextmanager
def _num_threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


# --- printing --------------------------------------------------------------------------------------
def _persons(n: int) -> str:
    return f"{n} person" + ("s" if n != 1 else "")


def gflops_per_s(flops: float, ms: float) -> float:
    """Achieved GFLOP/s of ``flops`` done in ``ms`` milliseconds (0 when either is 0)."""
    return flops / (ms * 1e6) if flops > 0 and ms > 0 else 0.0


def _stage_table(title: str, results: list[dict], attainable: float) -> None:
    print(f"\n{title}")
    print(f"{'':>22}" + "".join(f"{s:>12}" for s in STAGES))

    def line(label, values, fmt):
        print(f"{label:>22}" + "".join(fmt(v) if v else f"{'-':>12}" for v in values))

    for r in results:
        ms, fl = r["ms"], r["flops"]
        rate = [gflops_per_s(fl.get(s, 0), ms[s]) for s in STAGES]
        line(f"{_persons(r['persons'])}  ms", [ms[s] for s in STAGES], lambda v: f"{v:12.1f}")
        line("GFLOP", [fl.get(s, 0) / 1e9 for s in STAGES], lambda v: f"{v:12.3f}")
        line("GFLOP/s", rate, lambda v: f"{v:12.1f}")
        line("% attainable", [100 * v / attainable for v in rate], lambda v: f"{v:12.1f}")
    last = results[-1]["ms"]
    line(f"share % ({_persons(results[-1]['persons'])})", [100 * last[s] / last["total"] for s in STAGES],
         lambda v: f"{v:12.1f}")
    base = results[0]
    for r in results[1:]:
        line(f"ms {r['persons']} / {base['persons']}", [r["ms"][s] / max(base["ms"][s], 1e-9) for s in STAGES],
             lambda v: f"{v:12.2f}")
    other = [f"{_persons(r['persons'])} {r['flops']['other'] / 1e9:.3f}" for r in results]
    print(f"{'':>22}GFLOP outside the stage modules (in total only): {', '.join(other)}")


def _map_table(title: str, room: dict[str, float], big: dict[str, float]) -> None:
    print(f"\n{title}")
    print(f"{'':>22}" + "".join(f"{s:>12}" for s in STAGES))
    for label, t in (("room only  ms", room), ("room + 2M  ms", big)):
        print(f"{label:>22}" + "".join(f"{t[s]:12.1f}" for s in STAGES))
    print(f"{'room + 2M / room':>22}" + "".join(f"{big[s] / max(room[s], 1e-9):12.2f}" for s in STAGES))


def summary_markdown(results: list[dict], attainable: dict[str, float]) -> str:
    """Return the compact Markdown summary: one row per (preset, precision, persons)."""
    rows = ["| preset | precision | persons | total ms | x vs 1 person | GFLOP | GFLOP/s | % of attainable | peak MB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        ref = next(q for q in results if q["preset"] == r["preset"] and q["precision"] == r["precision"])
        ms, fl = r["ms"]["total"], r["flops"]["total"]
        rate = gflops_per_s(fl, ms)
        ratio = f"{ms / ref['ms']['total']:.2f}" + ("" if ref["persons"] == 1 else f" (vs {ref['persons']})")
        rows.append(f"| {r['preset']} | {r['precision']} | {r['persons']} | {ms:.0f} | {ratio} | {fl / 1e9:.2f} | "
                    f"{rate:.1f} | {100 * rate / attainable[r['precision']]:.1f} | {r['peak_mb']:.0f} |")
    return "\n".join(rows)


def _default_precisions(device: torch.device) -> list[str]:
    if device.type == "cuda":
        return ["fp32", "fp16", "bf16"]
    return ["fp32", "bf16"] if cpu_supports_bf16() else ["fp32"]


# --- main ------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", default=["small", "official"], choices=["small", "official"])
    ap.add_argument("--precisions", nargs="+", choices=sorted(DTYPES), default=None,
                    help="default: fp32, and bf16 on a CPU with native bf16; fp32 fp16 bf16 on CUDA")
    ap.add_argument("--persons", nargs="+", type=int, default=[1, 4, 8])
    ap.add_argument("--repeats", type=int, default=3, help="timed frames per configuration (median)")
    ap.add_argument("--warmup", type=int, default=1,
                    help="untimed frames per configuration before the FLOP-counting one (itself untimed)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--weights", choices=["random", "shipped"], default="random")
    ap.add_argument("--gemm-size", type=int, default=2048, help="side of the attainable-rate GEMM")
    ap.add_argument("--no-map-check", action="store_true", help="skip the 2,000,000 extra map points check")
    ap.add_argument("--json", type=Path, default=None, help="write every number to this file")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    with _num_threads(args.threads), tempfile.TemporaryDirectory() as tmp:
        results, map_checks, machine = _run(args, Path(tmp))
    print("\n" + summary_markdown(results, machine["attainable_gemm_gflops"]))
    elapsed = time.perf_counter() - t_start
    print(f"\n(bench took {elapsed:.0f} s)")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "results": results, "map_checks": map_checks,
                                         "elapsed_s": elapsed}, indent=1))
    return 0


def _measure_attainable(machine: dict, precision: str, device: torch.device, gemm_size: int) -> None:
    """Measure the attainable rates of ``precision`` once more; the machine's rate is the best measurement."""
    for key, rate in (("gemm", attainable_gflops(DTYPES[precision], device, gemm_size)),
                      ("conv", attainable_conv_gflops(DTYPES[precision], device))):
        samples = machine[f"attainable_{key}_samples"].setdefault(precision, [])
        samples.append(rate)
        machine[f"attainable_{key}_gflops"][precision] = max(samples)


def _run(args, tmp: Path) -> tuple[list[dict], list[dict], dict]:
    model_dir = write_synthetic_model_dir(tmp / "synthetic_model")
    body = load_body_assets(model_dir)
    scene = make_demo_scene(model_dir)
    width = float(np.median(np.max(scene.boxes[:, 2:] - scene.boxes[:, :2], axis=1)) * 1.15)
    device = PipelineConfig(device=args.device).resolved_device()
    precisions = args.precisions or _default_precisions(device)
    persons = sorted(set(args.persons))
    memory = PeakMemory(device)

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else ""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    machine = {"torch": torch.__version__, "device": str(device), "cpu": cpu, "gpu": gpu,
               "threads": torch.get_num_threads(), "memory_method": memory.method, "load_average_1min": load,
               "gemm_size": args.gemm_size, "conv_shape": HRNET_CONV,
               "attainable_gemm_gflops": {}, "attainable_conv_gflops": {},
               "attainable_gemm_samples": {}, "attainable_conv_samples": {}}
    print(f"torch {torch.__version__}, {device} {gpu or cpu}, threads {torch.get_num_threads()}, "
          f"scene {len(scene.scene_points_map)} pts, weights {args.weights}, memory: {memory.method}")
    if device.type == "cpu" and load >= 1.0:
        print(f"WARNING: load average {load:.1f} before the run ({os.cpu_count()} CPUs): other processes compete "
              "for the cores (oversubscribed OpenMP threads can be 10x slower); run on a quiet machine")
    for precision in precisions:
        _measure_attainable(machine, precision, device, args.gemm_size)

    results, map_checks, blocks = [], [], []
    for preset in args.presets:
        for i_prec, precision in enumerate(precisions):
            memory.baseline()
            pipe, pin = _pipeline(preset, args.weights, model_dir, body, PipelineConfig(device=args.device,
                                                                                        precision=precision))
            if pin:
                _pin_depth(pipe, scene.K, width)
            pipe.set_scene(scene.scene_points_map)
            n_params = sum(p.numel() for p in pipe.model.parameters()) / 1e6
            rows = []
            for n in persons:
                boxes = _boxes(scene, n)
                frame = functools.partial(pipe.process, scene.image, scene.K, scene.T_map_camera, boxes)
                for _ in range(args.warmup):  # first: one-time work (caches) must not count as FLOPs
                    frame()
                flops = count_stage_flops(pipe.model, frame)
                memory.reset()
                ms = _measure(pipe, scene, boxes, args.repeats, warmup=0)
                rows.append({"preset": preset, "precision": precision, "persons": n, "ms": ms, "flops": flops,
                             "peak_mb": memory.peak_mb(), "weights": pipe.weights_description})
                print(f"  {preset} {precision} {_persons(n)}: total {ms['total']:.0f} ms, "
                      f"{flops['total'] / 1e9:.2f} GFLOP, peak {rows[-1]['peak_mb']:.0f} MB", flush=True)
            results += rows
            label = "random weights, depth pinned" if pin else "shipped trained weights"
            blocks.append((f"{preset} preset ({n_params:.1f} M params, {label}), {pipe.device}, {pipe.precision}, "
                           f"median of {args.repeats}", rows))

            if i_prec == 0 and not args.no_map_check:
                rng = np.random.default_rng(0)
                far = rng.uniform([40, 40, 0], [400, 400, 3], size=(2_000_000, 3)).astype(np.float32)
                room = _measure(pipe, scene, _boxes(scene, 1), args.repeats)
                pipe.set_scene(np.concatenate([scene.scene_points_map, far]))
                big = _measure(pipe, scene, _boxes(scene, 1), args.repeats)
                map_checks.append({"preset": preset, "precision": precision, "map_points": len(pipe.scene),
                                   "room_ms": room, "big_ms": big})
                print(f"  {preset} {precision} 1 person, map + 2,000,000 points: total {big['total']:.0f} ms "
                      f"(room only {room['total']:.0f} ms)", flush=True)
            del pipe
            _measure_attainable(machine, precision, device, args.gemm_size)  # again: the best of all counts

    gemm, conv = machine["attainable_gemm_gflops"], machine["attainable_conv_gflops"]
    print(f"\nattainable, best of {len(machine['attainable_gemm_samples'][precisions[0]])} measurements "
          f"(GEMM {args.gemm_size}^3 / conv3x3 {'x'.join(map(str, HRNET_CONV))} channels_last): "
          + ", ".join(f"{p} {gemm[p]:.0f} / {conv[p]:.0f}" for p in precisions) + " GFLOP/s")
    for title, rows in blocks:
        precision = rows[0]["precision"]
        _stage_table(f"{title}; % of the {precision} GEMM rate {gemm[precision]:.0f} GFLOP/s", rows, gemm[precision])
    for check in map_checks:
        _map_table(f"{check['preset']} {check['precision']}: map with 2,000,000 extra points ({check['map_points']} "
                   f"after voxels), 1 person, median of {args.repeats}", check["room_ms"], check["big_ms"])
    return results, map_checks, machine


if __name__ == "__main__":
    sys.exit(main())
