"""The training data stream: sources mixed by weight, split over DataLoader workers and DDP ranks, in batches.

:class:`TrainStream` is an ``IterableDataset`` whose items are whole :class:`~sahmr_ros.training.batch.TrainBatch`
objects of exactly ``batch_size`` persons (``DataLoader(stream, batch_size=None)``). Each reader (one DataLoader
worker of one rank) runs its own deterministic stream:

1. every source is read by its own iterator: a :class:`~sahmr_ros.data.ShardStream` for ``sahmr synth``
   shards (shards split over all readers, reshuffled each source epoch), or a seeded permutation of the
   official RICH / PROX reader's indices dealt over the readers; a source that runs out starts its next
   epoch, so the stream never ends;
2. for each sample a seeded generator picks the source by weight;
3. each sample becomes one item per annotated person (:func:`~sahmr_ros.training.batch.make_items`), with
   the augmentation drawn from a generator seeded by ``(seed, rank, reader, sample number)``; persons are
   packed into batches of ``batch_size`` (a sample's persons may span two batches).

Everything a reader yields depends only on the seed, the rank, the world size and the number of workers,
so a run that resumes after ``k`` batches rebuilds the same stream and skips what was consumed
(:meth:`TrainStream.start_at`): the DataLoader takes batches from its workers in turn, so reader ``w``
made batches ``w, w + W, w + 2W, ...`` of its rank. Skipping replays the source choices and decodes the
skipped samples but builds no item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from torch.utils.data import IterableDataset, get_worker_info

from sahmr_ros.errors import InputError
from sahmr_ros.training.batch import collate_items, make_items
from sahmr_ros.training.config import DataSource

__all__ = ["OpenedSource", "TrainStream", "annotated_persons", "open_sources"]

_MIX_STREAM, _AUGMENT_STREAM = 1, 2  # seed-sequence tags of the per-reader generators


def annotated_persons(sample) -> int:
    """Return how many items :func:`~sahmr_ros.training.batch.make_items` makes of ``sample`` (pelvis z > 0)."""
    return sum(1 for p in sample.persons if p.root_camera[2] > 0)


@dataclass
class OpenedSource:
    """A training source, opened.

    Attributes:
        config: its :class:`~sahmr_ros.training.config.DataSource`.
        kind: ``"shards"``, ``"rich"`` or ``"prox"``.
        samples: samples of the split; persons: annotated persons (one epoch of this source).
        body_model: ``"synthetic"`` or ``"smpl"``.
        reader: the official reader (official data only).
    """

    config: DataSource
    kind: str
    samples: int
    persons: int
    body_model: str | None
    reader: Any = None


def open_sources(sources: Sequence[DataSource], model_dir: str | Path, body_model: str) -> list[OpenedSource]:
    """Open every training source and check that it was made with the run's body model.

    Args:
        sources: from the config's ``data.train``.
        model_dir: the run's body files (official data reads its regressor and part ids there).
        body_model: ``"synthetic"`` or ``"smpl"``, the run's body.

    Raises:
        InputError: a missing or empty source, an unknown layout, a body model mismatch.
    """
    from sahmr_ros.evaluation.evaluate import check_body_model, data_kind

    opened = []
    for i, src in enumerate(sources):
        where = f"data.train[{i}] {src.path}"
        try:
            kind = data_kind(src.path)
        except InputError as exc:
            raise InputError(f"{where}: {exc}") from None
        if src.kind != "auto" and src.kind != kind:
            raise InputError(f"{where}: kind {src.kind!r} given, but the directory holds {kind!r} data")
        if kind == "shards":
            from sahmr_ros.data.shards import read_manifest

            manifest = read_manifest(src.path)
            counts = manifest["counts"]["per_split"].get(src.split, {})
            samples, persons = int(counts.get("samples", 0)), int(counts.get("persons", 0))
            if samples == 0:
                splits = ", ".join(sorted(manifest["counts"]["per_split"])) or "none"
                raise InputError(f"{where}: split {src.split!r} is empty (the data holds: {splits}); set its split")
            body = manifest.get("body_model")
            if body is None:
                from sahmr_ros.data.dataset import ShardStream

                first = next(iter(ShardStream(src.path, split=src.split, rank=0, world_size=1)))
                body = first.extra.get("body_model")
            check_body_model(body, body_model, where)
            opened.append(OpenedSource(src, kind, samples, persons, body))
        else:
            from sahmr_ros.data.official import open_official

            if src.split != "test":
                raise InputError(f"{where}: official {kind.upper()} data has only the 'test' split; set split: test")
            check_body_model("smpl", body_model, where)
            reader = open_official(src.path, model_dir)
            if len(reader) == 0:
                raise InputError(f"{where}: the official {kind.upper()} data lists no sample")
            opened.append(OpenedSource(src, kind, len(reader), len(reader), "smpl", reader))
    return opened


class _ShardSource:
    """Samples of one shard source for one reader, epoch after epoch."""

    def __init__(self, opened: OpenedSource, seed: int, rank: int, world_size: int, index: int):
        from sahmr_ros.data.dataset import ShardStream

        src = opened.config
        self.name = f"data.train[{index}] {src.path}"
        self.stream = ShardStream(src.path, split=src.split, shuffle=True, seed=seed + 1009 * index,
                                  shuffle_buffer=src.shuffle_buffer, rank=rank, world_size=world_size)
        self.epoch = 0
        self._it: Iterator | None = None

    def next(self):
        """Return ``(sample, scene)``; the next epoch starts when this one is exhausted."""
        for _ in range(2):
            if self._it is None:
                self.stream.set_epoch(self.epoch)
                self._it = iter(self.stream)
            sample = next(self._it, None)
            if sample is not None:
                return sample, self.stream.scenes[sample.scene_id]
            self._it = None
            self.epoch += 1
        raise InputError(f"{self.name}: this reader got no sample in a whole epoch: the source has fewer samples "
                         "than readers (workers x processes); use fewer workers or more data")


class _OfficialSource:
    """Samples of one official reader for one reader of the stream, epoch after epoch."""

    def __init__(self, opened: OpenedSource, seed: int, slot: int, count: int, index: int):
        self.reader, self.seed, self.slot, self.count = opened.reader, seed + 1009 * index, slot, count
        self.name = f"data.train[{index}] {opened.config.path}"
        self.epoch = 0
        self._order: list[int] = []

    def next(self):
        """Return ``(sample, scene)``; the next epoch starts when this one is exhausted."""
        for _ in range(2):
            if not self._order:
                order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.reader))
                self._order = [int(i) for i in order[self.slot::self.count]][::-1]
                if not self._order:
                    break
                self.epoch += 1
            sample = self.reader[self._order.pop()]
            return sample, self.reader.scene(sample.scene_id)
        raise InputError(f"{self.name}: this reader got no sample: the source has fewer samples than readers "
                         "(workers x processes); use fewer workers")


class TrainStream(IterableDataset):
    """Batches of exactly ``batch_size`` persons from the weighted mix of the training sources.

    Args:
        sources: from :func:`open_sources`.
        body: :class:`sahmr_ros.body.BodyAssets` (batches carry its part ids and regressor).
        batch_size: persons per batch.
        seed: seeds the data order, the source choice and the augmentation.
        rank, world_size: this process among the DDP processes.
        workers: DataLoader workers of this process (0: the main process reads).
        augment: the official box jitter and zoom.
    """

    def __init__(self, sources: Sequence[OpenedSource], body, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, workers: int = 0, augment: bool = True):
        super().__init__()
        if not sources:
            raise InputError("data.train: no training source")
        self.sources = list(sources)
        weights = np.array([s.config.weight for s in self.sources], np.float64)
        self.weights = weights / weights.sum()
        self.body, self.batch_size, self.seed = body, int(batch_size), int(seed)
        self.rank, self.world_size, self.workers = int(rank), int(world_size), int(workers)
        self.augment = bool(augment)
        self.skip = [0] * max(1, self.workers)  # batches each reader skips (start_at)

    @property
    def persons_per_epoch(self) -> int:
        """Annotated persons in one pass over every source."""
        return sum(s.persons for s in self.sources)

    def start_at(self, consumed: int) -> int:
        """Continue a stream of which this rank consumed ``consumed`` batches.

        Returns:
            How many leading batches the caller must drop from the new DataLoader (fewer than the number
            of workers): each reader skips whole rounds of batches, the DataLoader's round-robin starts
            again at reader 0, so the batches of the last, partial round are rebuilt and dropped.
        """
        readers = max(1, self.workers)
        rounds, drop = divmod(int(consumed), readers)
        self.skip = [rounds] * readers
        return drop

    def __iter__(self) -> Iterator:
        info = get_worker_info()
        worker = info.id if info is not None else 0
        readers = max(1, self.workers)
        if info is not None and info.num_workers != readers:
            raise InputError(f"workers: the stream was built for {readers} workers, the DataLoader has "
                             f"{info.num_workers}")
        slot, count = self.rank * readers + worker, self.world_size * readers
        iters = []
        for i, s in enumerate(self.sources):
            if s.kind == "shards":
                # ShardStream splits over (rank, DataLoader worker) itself
                iters.append(_ShardSource(s, self.seed, self.rank, self.world_size, i))
            else:
                iters.append(_OfficialSource(s, self.seed, slot, count, i))
        mix = np.random.default_rng([self.seed, self.rank, worker, _MIX_STREAM])
        return self._batches(iters, mix, worker, self.skip[worker])

    def _batches(self, iters: list, mix: np.random.Generator, worker: int, skip: int) -> Iterator:
        pending: list = []  # items made but not yet batched
        owed = 0  # items of the last sample that a skipped batch took
        ordinal = 0
        skip_items = skip * self.batch_size
        while True:
            source = int(mix.choice(len(iters), p=self.weights)) if len(iters) > 1 else 0
            sample, scene = iters[source].next()
            ordinal += 1
            n = annotated_persons(sample)
            if skip_items >= n:  # wholly inside the skipped batches: nothing built
                skip_items -= n
                continue
            owed, skip_items = skip_items, 0
            rng = np.random.default_rng([self.seed, self.rank, worker, _AUGMENT_STREAM, ordinal])
            items = make_items(sample, scene, rng=rng, augment=self.augment)
            pending.extend(items[owed:])
            owed = 0
            while len(pending) >= self.batch_size:
                yield collate_items(pending[: self.batch_size], self.body)
                del pending[: self.batch_size]


def steps_for_epochs(epochs: float, persons_per_epoch: int, batch_size: int, world_size: int) -> int:
    """Optimiser steps of ``epochs`` passes over ``persons_per_epoch`` persons at the global batch."""
    return max(1, math.ceil(epochs * persons_per_epoch / (batch_size * world_size)))
