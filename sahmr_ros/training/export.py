"""Weights to ship from training checkpoints: stages combined, batch norm recalibrated, fp16 storage.

``sahmr export`` (and :func:`export_weights`) turns ``sahmr train`` checkpoints into the file a user runs:

1. the model of ``checkpoint``, with the RCNet of ``rcnet`` when given (the paper trains RCNet first and the
   mesh network with RCNet frozen; runs of the two stages side by side are combined here);
2. optionally **precise batch norm**: every BatchNorm's running statistics replaced by their average over
   ``batches`` training batches (``torch.optim.swa_utils.update_bn``, the forward of the ``joint`` stage
   without gradients). During training the running statistics are an exponential average (momentum 0.1)
   over batches of a few persons, a noisy estimate of the population the evaluation then normalises with;
3. floating-point weights stored as float16 (batch-norm statistics stay float32); the loaders upcast.

Frames and units: none (weights only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from sahmr_ros.checkpoint import load_checkpoint, load_state_strict, save_checkpoint
from sahmr_ros.errors import CheckpointError, InputError

__all__ = ["combine_state", "stage_metadata", "recalibrate_batchnorm", "training_batches", "export_weights"]


def combine_state(base: dict, rcnet: dict | None) -> dict:
    """Return ``base``'s state dict with every ``rcnet.*`` tensor taken from ``rcnet`` (when given).

    Shapes may differ (an RCNet of another width); the strict load into the preset's model checks them.

    Raises:
        CheckpointError: the two do not hold the same RCNet keys.
    """
    if rcnet is None:
        return dict(base)
    ours = {k for k in base if k.startswith("rcnet.")}
    theirs = {k: v for k, v in rcnet.items() if k.startswith("rcnet.")}
    if ours != theirs.keys():
        raise CheckpointError(f"--rcnet: its RCNet keys differ from the checkpoint's ({len(ours ^ theirs.keys())} "
                              f"keys, e.g. {sorted(ours ^ theirs.keys())[:3]}): another preset?")
    return {k: (theirs[k] if k in theirs else v) for k, v in base.items()}


def stage_metadata(metadata: dict) -> dict:
    """``{"<stage>_meta": metadata}`` of each training stage a checkpoint holds (an export carries its own)."""
    carried = {k: v for k, v in metadata.items() if k.endswith("_meta")}
    if not carried and metadata.get("stage"):
        carried = {f"{metadata['stage']}_meta": dict(metadata)}
    return carried


class _JointForward(torch.nn.Module):
    """The joint stage's forward as one module call (what ``update_bn`` drives)."""

    def __init__(self, model: torch.nn.Module, seed: int):
        super().__init__()
        self.model, self.rng = model, np.random.default_rng(seed)

    def forward(self, batch):
        from sahmr_ros.training.objective import training_step

        # un-flipped crops only: the statistics of what inference sees
        return training_step(self.model, batch, "joint", self.rng, {"part_heatmaps_flip": 0.0})


def recalibrate_batchnorm(model: torch.nn.Module, batches: Iterable, seed: int = 0) -> int:
    """Set every BatchNorm's running statistics to their equal-weight average over ``batches`` (precise BN).

    Args:
        model: :class:`~sahmr_ros.networks.sahmr.SAHMR`, on the batches' device.
        batches: :class:`~sahmr_ros.training.batch.TrainBatch` objects (un-augmented crops: the statistics
            of what inference sees).
        seed: seed of the anchor and pelvis noise of the training forward.

    Returns:
        The number of batches used. The model is left in eval mode.
    """
    counted = []

    def counting(items: Iterable) -> Iterator:
        for b in items:
            counted.append(1)
            yield b

    with torch.no_grad():
        torch.optim.swa_utils.update_bn(counting(batches), _JointForward(model, seed))
    model.eval()
    return len(counted)


def training_batches(data: str | Path, body, split: str = "train", count: int = 32, samples_per_batch: int = 4,
                     seed: int = 0) -> Iterator:
    """Yield ``count`` un-augmented batches of a ``sahmr synth`` split, samples drawn without replacement.

    Raises:
        InputError: no such data, or fewer samples than ``count * samples_per_batch``.
    """
    from sahmr_ros.data.dataset import ShardIndex
    from sahmr_ros.training.batch import make_batch

    index = ShardIndex(data, split=split)
    need = count * samples_per_batch
    if len(index) < need:
        raise InputError(f"{data}: split {split!r} holds {len(index)} samples; precise batch norm over {count} "
                         f"batches of {samples_per_batch} needs {need} (lower --batches)")
    order = np.random.default_rng(seed).permutation(len(index))[:need]
    for j in range(count):
        samples = [index.sample(int(i)) for i in order[j * samples_per_batch:(j + 1) * samples_per_batch]]
        yield make_batch(samples, {s.scene_id: index.scene(s.scene_id) for s in samples}, body)


def export_weights(checkpoint: str | Path, out: str | Path, *, rcnet: str | Path | None = None,
                   precise_bn_data: str | Path | None = None, split: str = "train", batches: int = 32,
                   model_dir: str | Path | None = None, half: bool = True, seed: int = 0) -> Path:
    """Write the weights to ship (see the module docstring); returns ``out``.

    Args:
        checkpoint: a sahmr_ros checkpoint (e.g. the mesh stage's ``best.pt``).
        out: the file to write.
        rcnet: a checkpoint whose RCNet replaces ``checkpoint``'s.
        precise_bn_data: a ``sahmr synth`` directory to recalibrate batch norm on (None: keep the statistics).
        split, batches: its split and how many batches of 4 images.
        model_dir: the body files the data was made with (None: the synthetic body).
        half: store float16.
        seed: sample order and noise of the recalibration.
    """
    payload = load_checkpoint(checkpoint)
    other = load_checkpoint(rcnet, expected_preset=payload["preset"]) if rcnet is not None else None
    state = combine_state(payload["state_dict"], other["state_dict"] if other else None)
    metadata = {"exported_from": str(checkpoint), "rcnet_from": str(rcnet) if rcnet else "checkpoint",
                "storage": "float16 (batch-norm statistics float32)" if half else "float32",
                **stage_metadata(payload.get("metadata", {}))}
    if other is not None:
        metadata["rcnet_meta"] = stage_metadata(other.get("metadata", {})).get("rcnet_meta", other.get("metadata", {}))
    from sahmr_ros.body import load_body_assets
    from sahmr_ros.body.synthetic import temporary_synthetic_model_dir
    from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig

    if model_dir is not None:
        body = load_body_assets(model_dir)
    else:
        with temporary_synthetic_model_dir("sahmr_export_body_") as synthetic:
            body = load_body_assets(synthetic)
    model = SAHMR(SAHMRConfig.from_preset(payload["preset"]), body)
    load_state_strict(model, state, str(checkpoint), payload["preset"])
    if precise_bn_data is not None:
        used = recalibrate_batchnorm(model, training_batches(precise_bn_data, body, split, batches, seed=seed),
                                     seed=seed)
        metadata["precise_bn"] = f"{used} batches of 4 images of {precise_bn_data} split {split}, seed {seed}"
    return save_checkpoint(out, model, payload["preset"], metadata, half=half)
