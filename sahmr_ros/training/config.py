"""Configuration of ``sahmr train``: typed dataclasses read from a YAML file.

Every key is checked: an unknown key is refused with its dotted name (``optimizer.lr_scale``), a wrong
type or value names the key and what it accepts. Defaults follow the official training
(``../shared/SPEC.md`` section 6): Adam, weight decay 0, ``lr = canonical_lr * global_batch / 32``
(canonical 5e-4 for RCNet, 1e-4 for the mesh network and for joint fine-tuning), MultiStepLR with
gamma 0.5 at half the run, gradient clipping by value 0.5.

A minimal file::

    preset: small
    stage: mesh
    data:
      train:
        - {path: data/synth_train}
      val: {path: data/synth_val, split: val}
    steps: 1000

See ``config/train_small.yaml`` for every key with its default and meaning.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sahmr_ros.errors import InputError

__all__ = [
    "CANONICAL_BATCH",
    "CANONICAL_LR",
    "PRECISIONS",
    "STAGES",
    "DataConfig",
    "DataSource",
    "IntervalConfig",
    "OptimizerConfig",
    "TrainConfig",
    "ValidationSource",
    "config_to_dict",
    "load_config",
]

STAGES = ("rcnet", "mesh", "joint")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
BATCHNORM_MODES = ("train", "frozen", "sync")
SOURCE_KINDS = ("auto", "shards", "rich", "prox")
CANONICAL_BATCH = 32  # official: lr = canonical_lr * batch / 32
CANONICAL_LR = {"rcnet": 5e-4, "mesh": 1e-4, "joint": 1e-4}


@dataclass(frozen=True)
class DataSource:
    """One training source, mixed with the others by ``weight``.

    Attributes:
        path: a ``sahmr synth`` directory (shards) or official RICH / PROX data.
        weight: relative share of the training samples drawn from this source (> 0).
        split: split of a shard directory to train on (official data: only ``"test"`` exists).
        kind: ``"auto"`` (detected), ``"shards"``, ``"rich"`` or ``"prox"``.
        shuffle_buffer: samples held for in-shard shuffling (shards only; 0: none).
    """

    path: str
    weight: float = 1.0
    split: str = "train"
    kind: str = "auto"
    shuffle_buffer: int = 64


@dataclass(frozen=True)
class ValidationSource:
    """The held-out split validated every ``intervals.validate`` steps (``sahmr eval``'s metrics).

    Attributes:
        path: a ``sahmr synth`` directory or official RICH / PROX data.
        split: the held-out split (e.g. ``"val"``).
        limit: images evaluated at most (None: all).
    """

    path: str
    split: str = "val"
    limit: int | None = 64


@dataclass(frozen=True)
class DataConfig:
    """Training sources (mixed by weight) and the optional validation split."""

    train: tuple[DataSource, ...] = ()
    val: ValidationSource | None = None


@dataclass(frozen=True)
class OptimizerConfig:
    """Adam with the official schedule.

    Attributes:
        lr: learning rate; None: ``canonical_lr * batch_size * world_size / 32``.
        canonical_lr: None: 5e-4 for ``rcnet``, 1e-4 for ``mesh`` and ``joint`` (official).
        weight_decay: Adam's weight decay (official: 0).
        betas: Adam's betas.
        milestones: steps at which the lr is multiplied by ``gamma``; None: half of the run (official:
            epoch 15 of 30).
        gamma: MultiStepLR factor (official 0.5).
        clip_grad_value: gradients clipped to [-v, v] (official 0.5); None: no clipping.
    """

    lr: float | None = None
    canonical_lr: float | None = None
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    milestones: tuple[int, ...] | None = None
    gamma: float = 0.5
    clip_grad_value: float | None = 0.5


@dataclass(frozen=True)
class IntervalConfig:
    """Every how many steps to log, checkpoint and validate (0: never; the end always checkpoints)."""

    log: int = 10
    checkpoint: int = 1000
    validate: int = 1000
    keep_checkpoints: int = 3


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs.

    Attributes:
        preset: ``"small"`` or ``"official"`` (architecture, :class:`~sahmr_ros.networks.sahmr.SAHMRConfig`).
        stage: ``"rcnet"`` (root and contact network), ``"mesh"`` (mesh network, RCNet frozen) or ``"joint"``.
        init: None (random init, seeded) or a sahmr_ros checkpoint (``sahmr import-checkpoint`` output or
            any checkpoint of ``sahmr train``) of the same preset, loaded strictly.
        init_rcnet: None, or a sahmr_ros checkpoint whose RCNet replaces ``init``'s (the paper's stage B
            starts from the stage A RCNet: ``stage: mesh``, ``init_rcnet: RCNET_RUN/checkpoints/best.pt``).
        model_dir: body files (SMPL + official files, models/README.md); None: the synthetic body,
            written into the run directory (``RUN/body``).
        data: training sources and validation split.
        batch_size: persons per step and process (DDP: the global batch is ``batch_size * world_size``).
        workers: DataLoader worker processes per training process (0: load in the main process).
        optimizer: Adam and schedule.
        steps: optimiser steps of the run; exclusive with ``epochs``.
        epochs: passes over the training samples (all sources' sizes added), converted to steps.
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (CUDA, with a gradient scaler) or ``"auto"`` (bf16 on
            CUDA and on CPUs with AVX512-BF16 or AMX, else fp32). Geometry stays float32 whatever it is.
        augment: the official box jitter, zoom and horizontal flip.
        batchnorm: ``"train"`` (batch statistics of each process), ``"frozen"`` (running statistics, affine
            parameters still trained) or ``"sync"`` (SyncBatchNorm across processes; CUDA only).
        find_unused_parameters: DDP option, needed when a batch may leave a branch unused.
        intervals: log, checkpoint and validation intervals.
        loss_weights: weights of single loss terms by name, replacing the official ones (e.g.
            ``{part_heatmaps: 0.01}``); empty: the official weights (:func:`~.objective.loss_weights`).
        seed: seed of the initialisation, data order, augmentation and noise.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``; under torchrun each
            process takes ``cuda:LOCAL_RANK``.
    """

    preset: str = "small"
    stage: str = "mesh"
    init: str | None = None
    init_rcnet: str | None = None
    model_dir: str | None = None
    data: DataConfig = field(default_factory=DataConfig)
    batch_size: int = 24
    workers: int = 2
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    steps: int | None = None
    epochs: float | None = None
    precision: str = "fp32"
    augment: bool = True
    batchnorm: str = "train"
    find_unused_parameters: bool = True
    intervals: IntervalConfig = field(default_factory=IntervalConfig)
    loss_weights: dict[str, float] = field(default_factory=dict)
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        from sahmr_ros.networks.sahmr import PRESETS

        _choice("preset", self.preset, PRESETS)
        _choice("stage", self.stage, STAGES)
        _choice("precision", self.precision, PRECISIONS)
        _choice("batchnorm", self.batchnorm, BATCHNORM_MODES)
        if self.batch_size < 1:
            raise InputError(f"batch_size: expected >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise InputError(f"workers: expected >= 0, got {self.workers}")
        if (self.steps is None) == (self.epochs is None):
            raise InputError("steps / epochs: give exactly one of them (steps: optimiser steps; epochs: passes "
                             "over the training samples)")
        if self.steps is not None and self.steps < 1:
            raise InputError(f"steps: expected >= 1, got {self.steps}")
        if self.epochs is not None and not self.epochs > 0:
            raise InputError(f"epochs: expected > 0, got {self.epochs}")
        if not self.data.train:
            raise InputError("data.train: no training source; list at least one {path: DIR}")
        for i, src in enumerate(self.data.train):
            if not src.weight > 0 or not math.isfinite(src.weight):
                raise InputError(f"data.train[{i}].weight: expected a finite number > 0, got {src.weight}")
            _choice(f"data.train[{i}].kind", src.kind, SOURCE_KINDS)
            if src.shuffle_buffer < 0:
                raise InputError(f"data.train[{i}].shuffle_buffer: expected >= 0, got {src.shuffle_buffer}")
        if self.data.val is not None and self.data.val.limit is not None and self.data.val.limit < 1:
            raise InputError(f"data.val.limit: expected >= 1 or null, got {self.data.val.limit}")
        opt = self.optimizer
        for name in ("lr", "canonical_lr"):
            value = getattr(opt, name)
            if value is not None and not value > 0:
                raise InputError(f"optimizer.{name}: expected > 0 or null, got {value}")
        if opt.clip_grad_value is not None and not opt.clip_grad_value > 0:
            raise InputError(f"optimizer.clip_grad_value: expected > 0 or null, got {opt.clip_grad_value}")
        if opt.milestones is not None and any(m < 1 for m in opt.milestones):
            raise InputError(f"optimizer.milestones: expected steps >= 1, got {list(opt.milestones)}")
        for name in ("log", "checkpoint", "validate"):
            if getattr(self.intervals, name) < 0:
                raise InputError(f"intervals.{name}: expected >= 0 (0: never), got {getattr(self.intervals, name)}")
        from sahmr_ros.training.objective import loss_weights

        loss_weights(self.stage, self.loss_weights)  # names and values checked here, before any data is read
        if self.intervals.keep_checkpoints < 1:
            raise InputError(f"intervals.keep_checkpoints: expected >= 1, got {self.intervals.keep_checkpoints}")

    # -- derived values -------------------------------------------------------------------------------
    def learning_rate(self, world_size: int = 1) -> float:
        """Return the lr: ``optimizer.lr`` or the official ``canonical_lr * global_batch / 32``."""
        if self.optimizer.lr is not None:
            return float(self.optimizer.lr)
        canonical = self.optimizer.canonical_lr or CANONICAL_LR[self.stage]
        return canonical * self.batch_size * world_size / CANONICAL_BATCH

    def milestones(self, total_steps: int) -> list[int]:
        """Return the MultiStepLR milestones in steps (default: half of ``total_steps``, as epoch 15 of 30)."""
        if self.optimizer.milestones is not None:
            return sorted(int(m) for m in self.optimizer.milestones)
        return [max(1, total_steps // 2)]

    def replace(self, **changes) -> "TrainConfig":
        """Return a copy with top-level fields replaced (checked again)."""
        return dataclasses.replace(self, **changes)


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise InputError(f"{name}: unknown {value!r}; choose one of {', '.join(map(str, allowed))}")


# --- YAML -> dataclasses -----------------------------------------------------------------------------------
def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _convert(value: Any, tp: Any, name: str) -> Any:
    """``value`` (parsed YAML) as type ``tp``, or an InputError naming ``name``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, name)
            except InputError as exc:
                errors.append(str(exc))
        raise InputError(errors[0] if len(errors) == 1 else
                         f"{name}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        return _from_mapping(tp, value, name)
    if origin is dict:
        key_type, value_type = typing.get_args(tp)
        if not isinstance(value, dict):
            raise InputError(f"{name}: expected a mapping, got {value!r}")
        return {_convert(k, key_type, name): _convert(v, value_type, f"{name}.{k}") for k, v in value.items()}
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise InputError(f"{name}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{name}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise InputError(f"{name}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(v, a, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise InputError(f"{name}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, Path)):
            raise InputError(f"{name}: expected a string, got {value!r}")
        return str(value)
    raise AssertionError(f"unhandled config type {tp} of {name}")


def _from_mapping(cls, value: Any, name: str):
    if isinstance(value, cls):
        return value
    if cls is ValidationSource and isinstance(value, str):
        value = {"path": value}
    if cls is DataSource and isinstance(value, str):
        value = {"path": value}
    where = name or "the config"
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a mapping of keys, got {value!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in value:
        if key not in known:
            full = f"{name}.{key}" if name else str(key)
            raise InputError(f"{full}: unknown key; {where} accepts {', '.join(sorted(known))}")
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in value:
            kwargs[f.name] = _convert(value[f.name], hints[f.name], f"{name}.{f.name}" if name else f.name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise InputError(f"{name + '.' if name else ''}{f.name}: required key missing")
    return cls(**kwargs)


def config_from_dict(values: dict) -> TrainConfig:
    """Build a :class:`TrainConfig` from parsed YAML (unknown keys and bad values refused)."""
    return _from_mapping(TrainConfig, values, "")


def load_config(path: str | Path, overrides: dict | None = None) -> TrainConfig:
    """Read a YAML training config; relative data / init / model_dir paths are resolved from the working directory.

    Args:
        path: the YAML file.
        overrides: top-level keys replacing the file's (e.g. ``{"init": "x.pt"}`` from the command line).

    Raises:
        InputError: unreadable file, invalid YAML, unknown keys, wrong types or values.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise InputError(f"--config {path}: no such file")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InputError(f"--config {path}: not valid YAML ({exc})") from None
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise InputError(f"--config {path}: expected a mapping of keys at the top level")
    values = dict(values, **(overrides or {}))
    try:
        config = config_from_dict(values)
    except InputError as exc:
        raise InputError(f"--config {path}: {exc}") from None
    return _resolve_paths(config, Path.cwd())


def _resolve(p: str | None, base: Path) -> str | None:
    if p is None:
        return None
    q = Path(p).expanduser()
    return str(q if q.is_absolute() else (base / q).resolve())


def _resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    train = tuple(dataclasses.replace(s, path=_resolve(s.path, base)) for s in config.data.train)
    val = config.data.val
    if val is not None:
        val = dataclasses.replace(val, path=_resolve(val.path, base))
    return dataclasses.replace(config, data=DataConfig(train, val), init=_resolve(config.init, base),
                               init_rcnet=_resolve(config.init_rcnet, base), model_dir=_resolve(config.model_dir, base))


def config_to_dict(config: TrainConfig) -> dict:
    """Return the config as plain YAML-ready values (tuples as lists)."""
    def plain(v):
        if isinstance(v, tuple):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(config))
