"""``sahmr train``: the training loop, its run directory, checkpoints, exact resume, validation and DDP.

Run directory (written by rank 0 only)::

    RUN/config.yaml                     the resolved config of the run (read back by --resume)
    RUN/body/                           the synthetic body, when the config has no model_dir
    RUN/checkpoints/step_00001000.pt    sahmr_ros checkpoint of the model (sahmr eval --checkpoint)
    RUN/checkpoints/last.pt, best.pt    the latest one, and the best by validation
    RUN/state/step_00001000.pt          the rest of the training state: optimiser, scheduler, gradient
                                        scaler, RNG states of every rank, data position, best metric
    RUN/tensorboard/                    TensorBoard events (tensorboard --logdir RUN/tensorboard)
    RUN/metrics.jsonl                   the same values, one JSON object per line
    RUN/val/step_00001000/              sahmr eval's report of each validation (summary.json, .md, csv)

One step: a :class:`~sahmr_ros.training.batch.TrainBatch` of ``batch_size`` persons from the
:class:`~sahmr_ros.training.stream.TrainStream`, :func:`~sahmr_ros.training.objective.training_step` under
autocast (the model keeps its geometry in float32), backward, gradients clipped by value, Adam, MultiStepLR.
Under DDP the step module is wrapped in ``DistributedDataParallel``: gradients are averaged over the
processes, so N processes of batch B make the update one process makes on the joint batch of N x B
(with ``batchnorm: frozen`` or ``sync``; with ``train`` each process normalises by its own statistics).

Resume restores the model, the optimiser, the scheduler, the scaler, the RNG states and the data position
(batches consumed): on the CPU a resumed run equals an uninterrupted one bit for bit, given the same
number of processes and workers.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import shutil
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import yaml

from sahmr_ros import constants as C
from sahmr_ros.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from sahmr_ros.errors import CheckpointError, InputError
from sahmr_ros.training.config import TrainConfig, config_from_dict, config_to_dict
from sahmr_ros.training.runtime import (
    Distributed,
    autocast_dtype,
    capture_rng,
    init_distributed,
    resolve_precision,
    restore_rng,
)

__all__ = ["RESUMABLE_CHANGES", "TrainResult", "Trainer", "best_metric", "latest_step", "load_run_config", "train"]

STATE_FORMAT = "sahmr_ros.train_state"
RESUMABLE_CHANGES = ("steps", "epochs", "intervals", "data.val", "device")  # may differ on --resume
_NOISE_STREAM = 3
_VAL_KEYS = ("g_mpjpe_mm", "pa_mpjpe_mm", "g_mpve_mm", "root_error_mm", "coarse_root_error_mm", "contact_f1",
             "contact_precision", "contact_recall", "pene_m", "skipped")


def best_metric(stage: str) -> str:
    """Return the validation metric that picks ``best.pt`` (lower is better): the root for RCNet, G-MPJPE else."""
    return "root_error_mm" if stage == "rcnet" else "g_mpjpe_mm"


def _step_name(step: int) -> str:
    return f"step_{step:08d}.pt"


def latest_step(run_dir: str | Path) -> int | None:
    """Return the last step with both a model checkpoint and a training state in ``run_dir`` (None: none)."""
    run_dir = Path(run_dir)
    steps = []
    for p in (run_dir / "state").glob("step_*.pt"):
        try:
            step = int(p.stem.split("_")[1])
        except (IndexError, ValueError):
            continue
        if (run_dir / "checkpoints" / _step_name(step)).is_file():
            steps.append(step)
    return max(steps) if steps else None


@dataclass
class TrainResult:
    """What a call of :meth:`Trainer.run` did.

    Attributes:
        run_dir: the run directory.
        step: the last step done; total_steps: the run's length.
        losses: the mean loss of every step this call ran (rank 0's, in order).
        validations: ``{step: overall metrics}`` of this call.
        seconds_per_step: mean wall time of a step (data included).
        checkpoint: the last model checkpoint written.
    """

    run_dir: Path
    step: int
    total_steps: int
    losses: list[float] = field(default_factory=list)
    validations: dict[int, dict] = field(default_factory=dict)
    seconds_per_step: float = math.nan
    checkpoint: Path | None = None


class _StepModule(nn.Module):
    """The model with a forward that is one training step (what DDP wraps, so its hooks see the step)."""

    def __init__(self, model: nn.Module, stage: str, weights: dict[str, float]):
        super().__init__()
        self.model, self.stage, self.weights = model, stage, weights

    def forward(self, batch, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        from sahmr_ros.training.objective import training_step

        return training_step(self.model, batch, self.stage, rng, self.weights)


def _freeze_batchnorm(model: nn.Module) -> None:
    """Normalise with the running statistics while training (affine parameters still learn)."""
    def eval_mode(module, _inputs):
        module.training = False  # training_step sets train(); this runs after it, just before each forward

    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.register_forward_pre_hook(eval_mode)


class Trainer:
    """One training process of a run (rank 0 writes; under torchrun every rank builds one).

    Args:
        config: the run's config.
        run_dir: the run directory (created; must hold no run unless ``resume``).
        resume: continue the run in ``run_dir`` from its last checkpoint.
        progress: show a progress bar (rank 0).
        dist_context: the process's place among the DDP processes (None: from the environment).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path, *, resume: bool = False, progress: bool = True,
                 dist_context: Distributed | None = None):
        self.config, self.run_dir, self.progress = config, Path(run_dir), progress
        self.dist = dist_context or init_distributed(config.device)
        self.precision = resolve_precision(config.precision, self.dist.device)
        self.resume_step = self._check_run_dir(resume)
        self.step = 0
        self.best: dict = {"metric": best_metric(config.stage), "value": None, "step": None}
        self._setup()

    # -- set-up ---------------------------------------------------------------------------------------------
    def _check_run_dir(self, resume: bool) -> int | None:
        if resume:
            step = latest_step(self.run_dir)
            if step is None:
                raise InputError(f"--resume {self.run_dir}: no checkpoint with its training state (state/step_*.pt "
                                 "and checkpoints/step_*.pt) to resume from")
            return step
        if (self.run_dir / "state").is_dir() and any((self.run_dir / "state").iterdir()):
            raise InputError(f"-o {self.run_dir}: already holds a run; continue it with --resume {self.run_dir} or "
                             "choose another directory")
        return None

    def _setup(self) -> None:
        from sahmr_ros.body import load_body_assets
        from sahmr_ros.evaluation.evaluate import pipeline_body_model
        from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig
        from sahmr_ros.training.objective import trainable_parameters
        from sahmr_ros.training.stream import TrainStream, open_sources, steps_for_epochs

        cfg, d = self.config, self.dist
        if d.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.model_dir = Path(cfg.model_dir) if cfg.model_dir else self.run_dir / "body"
        if cfg.model_dir is None and d.is_main and not (self.model_dir / C.SYNTHETIC_MARKER_FILENAME).is_file():
            from sahmr_ros.body.synthetic import write_synthetic_model_dir

            write_synthetic_model_dir(self.model_dir)
        d.barrier()
        self.body = load_body_assets(self.model_dir)
        self.body_model = pipeline_body_model(self.model_dir)
        self.sources = open_sources(cfg.data.train, self.model_dir, self.body_model)

        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        model = SAHMR(SAHMRConfig.from_preset(cfg.preset), self.body)
        if cfg.init is not None and self.resume_step is None:
            self._load_weights(model, cfg.init, "init")
        if cfg.init_rcnet is not None and self.resume_step is None:
            self._load_weights(model.rcnet, cfg.init_rcnet, "init_rcnet", prefix="rcnet.")
        trainable = {id(p) for p in trainable_parameters(model, cfg.stage)}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        if cfg.batchnorm == "frozen":
            _freeze_batchnorm(model)
        elif cfg.batchnorm == "sync" and d.active:
            if d.device.type != "cuda":
                raise InputError("batchnorm: sync needs CUDA (torch's SyncBatchNorm); use train or frozen on the CPU")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        self.model = model.to(d.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        step_module = _StepModule(self.model, cfg.stage, dict(cfg.loss_weights))
        if d.active:
            from torch.nn.parallel import DistributedDataParallel

            step_module = DistributedDataParallel(
                step_module, device_ids=[d.device.index] if d.device.type == "cuda" else None,
                find_unused_parameters=cfg.find_unused_parameters)
        self.step_module = step_module

        self.stream = TrainStream(self.sources, self.body, cfg.batch_size, cfg.seed, d.rank, d.world_size,
                                  cfg.workers, augment=cfg.augment)
        self.total_steps = cfg.steps if cfg.steps is not None else steps_for_epochs(
            cfg.epochs, self.stream.persons_per_epoch, cfg.batch_size, d.world_size)
        self.lr = cfg.learning_rate(d.world_size)
        o = cfg.optimizer
        self.optimizer = torch.optim.Adam(self.params, lr=self.lr, betas=o.betas, weight_decay=o.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(self.optimizer, cfg.milestones(self.total_steps),
                                                              gamma=o.gamma)
        self.scaler = torch.amp.GradScaler(d.device.type, enabled=self.precision == "fp16")
        torch.manual_seed(cfg.seed + 7919 * (d.rank + 1))  # dropout differs per rank
        self.noise_rng = np.random.default_rng([cfg.seed, d.rank, _NOISE_STREAM])
        if self.resume_step is not None:
            self._restore(self.resume_step)
        elif d.is_main:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))

    def _load_weights(self, model: nn.Module, path: str | Path, what: str, prefix: str = "") -> dict:
        """Load a checkpoint's weights strictly (only its ``prefix`` keys, without the prefix, when given)."""
        payload = load_checkpoint(path)
        if payload["preset"] != self.config.preset:
            raise CheckpointError(f"{what} {path}: a {payload['preset']!r} checkpoint, the config's preset is "
                                  f"{self.config.preset!r}; set preset: {payload['preset']}")
        state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
        load_state_strict(model, state, f"{what} {path}", self.config.preset)
        return payload

    # -- state files ----------------------------------------------------------------------------------------
    def _restore(self, step: int) -> None:
        self._load_weights(self.model, self.run_dir / "checkpoints" / _step_name(step), "--resume")
        path = self.run_dir / "state" / _step_name(step)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many types for corrupt files
            raise CheckpointError(f"{path}: unreadable training state ({type(exc).__name__}: {exc})") from None
        if not isinstance(state, dict) or state.get("format") != STATE_FORMAT or state.get("step") != step:
            raise CheckpointError(f"{path}: not a sahmr train state file of step {step}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ranks = state["ranks"]
        same = state["world_size"] == self.dist.world_size and state["workers"] == self.config.workers
        if not same and self.dist.is_main:
            print(f"sahmr train: warning: the run had {state['world_size']} process(es) x {state['workers']} "
                  f"worker(s), this one {self.dist.world_size} x {self.config.workers}: it continues with fresh RNG "
                  "streams and data order (not bit-exact)")
        if same:
            mine = ranks[self.dist.rank]
            restore_rng(mine["rng"])
            self.noise_rng.bit_generator.state = mine["noise_rng"]
        self.best = dict(state["best"])
        self.step = step
        self._drop = self.stream.start_at(step) if same else 0

    def _save(self) -> Path | None:
        """Write the model checkpoint and the training state of the current step (rank 0; all ranks call it)."""
        d, step = self.dist, self.step
        mine = {"rng": capture_rng(), "noise_rng": self.noise_rng.bit_generator.state}
        if d.active:
            ranks: list = [None] * d.world_size
            torch.distributed.all_gather_object(ranks, mine)
        else:
            ranks = [mine]
        if not d.is_main:
            return None
        ck = save_checkpoint(self.run_dir / "checkpoints" / _step_name(step), self.model, self.config.preset,
                             self._metadata())
        state = {"format": STATE_FORMAT, "step": step, "total_steps": self.total_steps,
                 "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "scaler": self.scaler.state_dict(), "ranks": ranks, "world_size": d.world_size,
                 "workers": self.config.workers, "batches_consumed": step, "best": dict(self.best)}
        state_path = self.run_dir / "state" / _step_name(step)
        state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(state_path)
        shutil.copyfile(ck, self.run_dir / "checkpoints" / "last.pt")
        self._prune()
        return ck

    def _prune(self) -> None:
        keep = self.config.intervals.keep_checkpoints
        steps = sorted(int(p.stem.split("_")[1]) for p in (self.run_dir / "state").glob("step_*.pt"))
        for old in steps[:-keep]:
            for sub in ("state", "checkpoints"):
                (self.run_dir / sub / _step_name(old)).unlink(missing_ok=True)

    def _metadata(self, **extra) -> dict:
        cfg = self.config
        return {"trained_by": "sahmr train", "stage": cfg.stage, "step": self.step, "total_steps": self.total_steps,
                "init": cfg.init or "none", "init_rcnet": cfg.init_rcnet or "none", "body_model": self.body_model,
                "seed": cfg.seed,
                "world_size": self.dist.world_size, "batch_size": cfg.batch_size, "precision": self.precision,
                "config_yaml": yaml.safe_dump(config_to_dict(cfg), sort_keys=False), **extra}

    # -- the loop -------------------------------------------------------------------------------------------
    def _loader(self):
        from torch.utils.data import DataLoader

        w = self.config.workers
        return DataLoader(self.stream, batch_size=None, num_workers=w, prefetch_factor=2 if w else None,
                          generator=torch.Generator().manual_seed(self.config.seed), persistent_workers=False)

    def train_step(self, batch) -> dict[str, float]:
        """Run one optimiser step on ``batch`` (a :class:`~sahmr_ros.training.batch.TrainBatch`; every rank calls it).

        Returns:
            This rank's loss terms, ``"loss"``, ``"grad_norm"`` (of the averaged gradients, before clipping)
            and ``"skipped"`` (1.0 when non-finite gradients skipped the update).
        """
        dtype = autocast_dtype(self.precision)
        dev = self.dist.device
        batch = batch.to(dev)
        with torch.autocast(device_type=dev.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            terms = self.step_module(batch, self.noise_rng)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])) \
            if grads else torch.zeros(())
        clip = self.config.optimizer.clip_grad_value
        if clip is not None:
            nn.utils.clip_grad_value_(self.params, clip)
        finite = bool(torch.isfinite(norm))  # the same on every rank: gradients are averaged
        if self.scaler.is_enabled():
            self.scaler.step(self.optimizer)  # skips non-finite steps itself
            self.scaler.update()
        elif finite:
            self.optimizer.step()
        self.scheduler.step()
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["grad_norm"] = float(norm)
        out["skipped"] = float(not finite)
        return out

    def run(self, until_step: int | None = None, max_seconds: float | None = None) -> TrainResult:
        """Train to the end of the run, to ``until_step`` or for ``max_seconds``; checkpoint; return a summary.

        Stopping early writes a checkpoint, so ``--resume`` continues exactly there.
        """
        from tqdm import tqdm

        cfg, d = self.config, self.dist
        end = self.total_steps if until_step is None else min(self.total_steps, int(until_step))
        result = TrainResult(self.run_dir, self.step, self.total_steps)
        writer = self._writer() if d.is_main else None
        if d.is_main:
            print(f"sahmr train: {cfg.preset} preset, stage {cfg.stage}, {len(self.params)} trainable tensors "
                  f"({sum(p.numel() for p in self.params) / 1e6:.2f} M parameters), {d.world_size} process(es) on "
                  f"{d.device}, precision {self.precision}, global batch {cfg.batch_size * d.world_size}, "
                  f"lr {self.lr:.3g}, steps {self.step + 1}..{end} of {self.total_steps}; run {self.run_dir}")
        drop = getattr(self, "_drop", 0)
        self._drop = 0
        batches = iter(self._loader())
        for _ in range(drop):
            next(batches)
        bar = tqdm(total=end, initial=self.step, desc="sahmr train", unit="step", dynamic_ncols=True,
                   disable=not (self.progress and d.is_main))
        window: dict[str, list[float]] = {}
        started = time.perf_counter()
        ran = 0
        try:
            while self.step < end:
                t0 = time.perf_counter()
                values = self.train_step(next(batches))
                self.step += 1
                ran += 1
                values["step_s"] = time.perf_counter() - t0
                result.losses.append(values["loss"])
                for k, v in values.items():
                    window.setdefault(k, []).append(v)
                bar.update(1)
                bar.set_postfix(loss=f"{values['loss']:.4g}", refresh=False)
                last = self.step == end
                timed_out = max_seconds is not None and time.perf_counter() - started > max_seconds
                if d.active and max_seconds is not None:  # every rank stops at the same step
                    flag = torch.tensor([float(timed_out)], device=d.device)
                    torch.distributed.all_reduce(flag)
                    timed_out = bool(flag.item() > 0)
                if cfg.intervals.log and (self.step % cfg.intervals.log == 0 or last or timed_out):
                    self._log(window, writer, bar)
                    window = {}
                if cfg.intervals.validate and cfg.data.val is not None and (
                        self.step % cfg.intervals.validate == 0 or self.step == self.total_steps):
                    result.validations[self.step] = self._validate(writer)
                if (cfg.intervals.checkpoint and self.step % cfg.intervals.checkpoint == 0) or last or timed_out:
                    result.checkpoint = self._save() or result.checkpoint
                if timed_out:
                    break
        except KeyboardInterrupt:
            if not d.active and ran:
                result.checkpoint = self._save()
                print(f"\nsahmr train: interrupted; checkpoint of step {self.step} written; continue with "
                      f"sahmr train --resume {self.run_dir}")
            raise
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        result.step = self.step
        result.seconds_per_step = (time.perf_counter() - started) / max(1, ran)
        if d.is_main:
            done = "finished" if self.step == self.total_steps else f"stopped at step {self.step}"
            best = (f"; best {self.best['metric']} {self.best['value']:.1f} at step {self.best['step']}"
                    if self.best["value"] is not None else "")
            print(f"sahmr train: {done} ({ran} steps, {result.seconds_per_step:.2f} s/step); model "
                  f"{self.run_dir / 'checkpoints' / 'last.pt'}{best}")
        return result

    # -- logging and validation -------------------------------------------------------------------------------
    def _writer(self):
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=self.step + 1)

    def _log(self, window: dict[str, list[float]], writer, bar) -> None:
        means = {k: float(np.mean(v)) for k, v in window.items()}
        if self.dist.active:  # mean over the ranks (every rank logs at the same steps)
            keys = sorted(k for k in means if k not in ("step_s", "grad_norm", "skipped"))
            t = torch.tensor([means[k] for k in keys], dtype=torch.float64, device=self.dist.device)
            torch.distributed.all_reduce(t)
            means.update({k: float(v) / self.dist.world_size for k, v in zip(keys, t.tolist())})
        if not self.dist.is_main:
            return
        lr = self.optimizer.param_groups[0]["lr"]
        persons_s = self.config.batch_size * self.dist.world_size / max(means["step_s"], 1e-9)
        for k, v in means.items():
            writer.add_scalar(f"train/{k}", v, self.step)
        writer.add_scalar("train/lr", lr, self.step)
        writer.add_scalar("train/persons_per_s", persons_s, self.step)
        writer.flush()
        terms = " ".join(f"{k} {v:.4g}" for k, v in means.items()
                         if k not in ("loss", "step_s", "grad_norm", "skipped"))
        bar.write(f"step {self.step}/{self.total_steps} loss {means['loss']:.4g} ({terms}) lr {lr:.3g} "
                  f"grad {means['grad_norm']:.3g} {means['step_s']:.2f} s/step {persons_s:.1f} persons/s")
        self._append_metrics({"kind": "train", "step": self.step, "lr": lr, **means})

    def _append_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def _validate(self, writer) -> dict:
        """Evaluate a copy of the model on the held-out split (rank 0; the others wait); keep the best."""
        d = self.dist
        metrics: dict = {}
        if d.is_main:
            metrics = self._evaluate()
            key = self.best["metric"]
            value = metrics.get(key)
            for k in _VAL_KEYS:
                if metrics.get(k) is not None:
                    writer.add_scalar(f"val/{k}", metrics[k], self.step)
            writer.flush()
            line = ", ".join(f"{k} {metrics[k]:.4g}" for k in _VAL_KEYS if metrics.get(k) is not None)
            print(f"validation at step {self.step}: {line}")
            self._append_metrics({"kind": "val", "step": self.step, **{k: metrics.get(k) for k in _VAL_KEYS}})
            if value is not None and (self.best["value"] is None or value < self.best["value"]):
                self.best = {"metric": key, "value": float(value), "step": self.step}
                save_checkpoint(self.run_dir / "checkpoints" / "best.pt", self.model, self.config.preset,
                                self._metadata(**{f"val_{key}": float(value)}))
        if d.active:
            box = [self.best]
            torch.distributed.broadcast_object_list(box, src=0)
            self.best = box[0]
        d.barrier()
        return metrics

    def _evaluate(self) -> dict:
        from sahmr_ros.body.assets import load_h36m_regressor
        from sahmr_ros.evaluation.evaluate import evaluate, open_data
        from sahmr_ros.evaluation.report import write_report
        from sahmr_ros.pipeline import Pipeline, PipelineConfig

        val = self.config.data.val
        data = open_data(val.path, val.split, model_dir=self.model_dir, expect_body=self.body_model)
        j_regressor = load_h36m_regressor(self.model_dir / C.H36M_REGRESSOR_FILENAME)
        with torch.random.fork_rng(devices=[]):
            model = copy.deepcopy(self.model)
            pipe = Pipeline(model, self.body.faces, PipelineConfig(device=str(self.dist.device), scene_pitch=None),
                            f"{self.config.preset} preset, step {self.step} of {self.run_dir.name}")
            result = evaluate(data, pipe, j_regressor, limit=val.limit, progress=False)
        run = {"command": "sahmr train (validation)", "step": self.step, "data": str(data.root), "split": val.split,
               "weights": pipe.weights_description, "limit": val.limit}
        report = write_report(result, self.run_dir / "val" / f"step_{self.step:08d}", run, faces=self.body.faces,
                              plots=False)
        del model, pipe
        overall = report["metrics"]["overall"]
        return {k: (None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v))
                for k, v in overall.items()}

    def close(self) -> None:
        """End the process group if this trainer started it."""
        self.dist.close()


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """Read ``RUN/config.yaml``, the config a run was started with."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise InputError(f"--resume {run_dir}: no config.yaml; not a sahmr train run directory")
    return config_from_dict(yaml.safe_load(path.read_text(encoding="utf-8")))


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        name = f"{prefix}{k}"
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _differences(a[k], b[k], name + ".")
        elif a.get(k) != b.get(k):
            out.append(name)
    return out


def train(config: TrainConfig | None, run_dir: str | Path, *, resume: bool = False, init: str | None = None,
          until_step: int | None = None, max_seconds: float | None = None, progress: bool = True) -> TrainResult:
    """Run ``sahmr train``: a new run in ``run_dir`` or, with ``resume``, its continuation.

    Args:
        config: the config (with ``resume``: None takes the run's own; a given one may differ only in
            :data:`RESUMABLE_CHANGES`).
        run_dir: the run directory.
        resume: continue the run in ``run_dir``.
        init: replaces the config's ``init`` (a new run only).
        until_step, max_seconds: stop early (with a checkpoint), as :meth:`Trainer.run`.
        progress: show a progress bar.
    """
    if resume:
        saved = load_run_config(run_dir)
        if init is not None:
            raise InputError("--init: a resumed run continues from its own checkpoint; --init starts a new run")
        if config is None:
            config = saved
        else:
            changed = [k for k in _differences(config_to_dict(saved), config_to_dict(config))
                       if not any(k == c or k.startswith(c + ".") for c in RESUMABLE_CHANGES)]
            if changed:
                raise InputError(f"--resume {run_dir}: the config differs from the run's in {', '.join(changed)}; "
                                 f"only {', '.join(RESUMABLE_CHANGES)} may change (or omit --config)")
    elif config is None:
        raise InputError("--config: required for a new run")
    if init is not None:
        config = config.replace(init=str(Path(init).resolve()))
    trainer = Trainer(config, run_dir, resume=resume, progress=progress)
    try:
        with _sigterm_interrupts():
            return trainer.run(until_step=until_step, max_seconds=max_seconds)
    finally:
        trainer.close()


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (``kill``, a scheduler's pre-emption) stops the run as Ctrl-C does: with a checkpoint.

    Only in the main thread (signal handlers cannot be set elsewhere); the previous handler comes back after.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
