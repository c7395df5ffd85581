"""``torch.utils.data`` datasets over the shards of :mod:`sahmr_ros.data.shards`.

* :class:`ShardStream` (an ``IterableDataset``) streams the shards for training: shards are split
  across DataLoader workers and distributed (DDP) ranks, so every sample comes exactly once per epoch
  over all of them; with fewer shards than readers, samples are dealt round-robin instead.
* :class:`ShardIndex` (a map-style ``Dataset``) indexes the tar members once and reads any sample by
  position, for evaluation.

Both yield decoded :class:`~sahmr_ros.data.sample.Sample` objects, or whatever ``transform(sample,
scenes)`` returns; the transform runs in the worker and gets the worker's :class:`SceneCache`, which
loads each scene once per process. Batch with ``DataLoader(..., collate_fn=collate_samples)`` (a list)
or with a transform that returns tensors and the default collation.
"""

from __future__ import annotations

import random
import tarfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import torch.distributed
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from sahmr_ros.data.sample import Sample, Scene
from sahmr_ros.data.shards import ShardReader, decode_sample, read_scene
from sahmr_ros.errors import InputError

__all__ = ["SceneCache", "ShardIndex", "ShardStream", "collate_samples"]

Transform = Callable[[Sample, "SceneCache"], Any]


def collate_samples(batch: list) -> list:
    """Collate function keeping a batch as the list of its items (samples differ in size)."""
    return list(batch)


def _identity(sample: Sample, scenes: "SceneCache") -> Sample:
    return sample


class SceneCache:
    """Scenes of one data directory, each loaded once per process and kept (least recently used out).

    Args:
        root: the data directory.
        max_scenes: scenes kept in memory at most.
    """

    def __init__(self, root: str | Path, max_scenes: int = 16):
        self.root = Path(root)
        self.max_scenes = max(1, int(max_scenes))
        self._scenes: OrderedDict[str, Scene] = OrderedDict()
        self.loads = 0  # how many files were read (tests check the caching)

    def __getitem__(self, scene_id: str) -> Scene:
        """Return the scene, loading ``scenes/<scene_id>.npz`` on first use."""
        if scene_id in self._scenes:
            self._scenes.move_to_end(scene_id)
            return self._scenes[scene_id]
        scene = read_scene(self.root, scene_id)
        self.loads += 1
        self._scenes[scene_id] = scene
        while len(self._scenes) > self.max_scenes:
            self._scenes.popitem(last=False)
        return scene

    def __getstate__(self):
        # Workers start with an empty cache: scenes are never pickled into worker processes.
        return {"root": self.root, "max_scenes": self.max_scenes, "_scenes": OrderedDict(), "loads": 0}


def _reader_slot(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """(index, count) of this reader among all DataLoader workers of all ranks."""
    if world_size is None:
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        rank, world_size = (torch.distributed.get_rank(), torch.distributed.get_world_size()) if dist else (0, 1)
    rank = 0 if rank is None else rank
    if not 0 <= rank < world_size:
        raise InputError(f"rank: expected 0..{world_size - 1}, got {rank}")
    info = get_worker_info()
    workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
    return rank * workers + worker, world_size * workers


class ShardStream(IterableDataset):
    """Stream the samples of a data directory, split across workers and ranks.

    Args:
        root: the data directory (``manifest.json``, shards, ``scenes/``).
        split: keep only samples of this split (None: all).
        shuffle: shuffle the shard order (and samples within a buffer) with ``seed + epoch``.
        seed: base seed of the shuffling.
        shuffle_buffer: samples held for in-shard shuffling (0: none).
        transform: ``transform(sample, scenes) -> item``, run in the worker.
        rank, world_size: this process's distributed rank; None reads them from
            ``torch.distributed`` when it is initialised, else 0 and 1.
        verify: check shard sha256 sums against the manifest.
        max_scenes: size of each worker's :class:`SceneCache`.
    """

    def __init__(self, root: str | Path, split: str | None = None, shuffle: bool = False, seed: int = 0,
                 shuffle_buffer: int = 0, transform: Transform | None = None, rank: int | None = None,
                 world_size: int | None = None, verify: bool = False, max_scenes: int = 16):
        super().__init__()
        self.reader = ShardReader(root, verify=verify)
        self.split, self.shuffle, self.seed = split, bool(shuffle), int(seed)
        self.shuffle_buffer = int(shuffle_buffer)
        self.transform = transform or _identity
        self.rank, self.world_size = rank, world_size
        self.scenes = SceneCache(root, max_scenes)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle differently in the next epoch (call before iterating, as with DistributedSampler)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        """Count the samples of the directory (of ``split`` when given), over all workers and ranks."""
        counts = self.reader.manifest["counts"]
        if self.split is None:
            return int(counts["samples"])
        return int(counts["per_split"].get(self.split, {}).get("samples", 0))

    def _samples(self, slot: int, count: int) -> Iterator[Sample]:
        shards = [(path, int(entry["samples"])) for path, entry in
                  zip(self.reader.shard_paths, self.reader.manifest["shards"])]
        if self.shuffle:
            random.Random(self.seed + self.epoch).shuffle(shards)
        if len(shards) >= count:  # whole shards per reader
            for path, _ in shards[slot::count]:
                yield from self.reader.iter_shard(path)
            return
        # fewer shards than readers: deal samples round-robin; each reader decodes only its own
        start = 0
        for path, n in shards:
            yield from self.reader.iter_shard(path, select=_RoundRobin(start, slot, count))
            start += n

    def __iter__(self) -> Iterator[Any]:
        slot, count = _reader_slot(self.rank, self.world_size)
        stream = (s for s in self._samples(slot, count) if self.split is None or s.split == self.split)
        if self.shuffle and self.shuffle_buffer > 1:
            stream = _buffer_shuffle(stream, self.shuffle_buffer, random.Random(self.seed + self.epoch + 7919 * slot))
        for sample in stream:
            yield self.transform(sample, self.scenes)


class _RoundRobin:
    """``select`` of :meth:`ShardReader.iter_shard`: sample i of a shard starting at ``start`` is ours."""

    def __init__(self, start: int, slot: int, count: int):
        self.start, self.slot, self.count = start, slot, count

    def __call__(self, i: int) -> bool:
        return (self.start + i) % self.count == self.slot


def _buffer_shuffle(items: Iterator, size: int, rng: random.Random) -> Iterator:
    buf: list = []
    for item in items:
        buf.append(item)
        if len(buf) >= size:
            yield buf.pop(rng.randrange(len(buf)))
    rng.shuffle(buf)
    yield from buf


class ShardIndex(Dataset):
    """Map-style view: sample ``i`` read directly from its tar members (positions indexed once).

    Args:
        root: the data directory.
        split: keep only samples of this split (None: all); read from each sample's JSON once.
        transform: ``transform(sample, scenes) -> item``.
        max_scenes: size of the :class:`SceneCache`.

    Raises:
        InputError: a missing or corrupt shard, naming it.
    """

    def __init__(self, root: str | Path, split: str | None = None, transform: Transform | None = None,
                 max_scenes: int = 16):
        import json

        self.reader = ShardReader(root)
        self.transform = transform or _identity
        self.scenes = SceneCache(root, max_scenes)
        # entries: (shard path, key, {suffix: (offset, size)})
        self._entries: list[tuple[Path, str, dict[str, tuple[int, int]]]] = []
        for path in self.reader.shard_paths:
            groups: dict[str, dict[str, tuple[int, int]]] = {}
            try:
                with tarfile.open(path, mode="r:") as tar:
                    for info in tar.getmembers():
                        if info.isfile():
                            key, _, suffix = info.name.rsplit("/", 1)[-1].partition(".")
                            groups.setdefault(key, {})[suffix] = (info.offset_data, info.size)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise InputError(f"{path}: not a readable tar shard ({type(exc).__name__}: {exc}); the file is "
                                 "truncated or corrupt; regenerate it") from None
            size = path.stat().st_size
            with open(path, "rb") as f:
                for key, members in groups.items():
                    if any(off + n > size for off, n in members.values()):
                        raise InputError(f"{path}: sample {key!r} extends past the end of the file; truncated")
                    if split is not None:
                        off, n = members.get("json", (0, 0))
                        f.seek(off)
                        try:
                            if json.loads(f.read(n).decode("utf-8")).get("split") != split:
                                continue
                        except (ValueError, UnicodeDecodeError, AttributeError):
                            raise InputError(f"{path}: {key}.json is not a valid JSON object") from None
                    self._entries.append((path, key, members))

    def __len__(self) -> int:
        return len(self._entries)

    def key(self, index: int) -> str:
        """Key of sample ``index``."""
        return self._entries[index][1]

    def sample(self, index: int) -> Sample:
        """Decode sample ``index`` (no transform)."""
        path, key, members = self._entries[index]
        with open(path, "rb") as f:
            data = {}
            for suffix, (off, n) in members.items():
                f.seek(off)
                data[suffix] = f.read(n)
        return decode_sample(data, key, str(path))

    def scene(self, scene_id: str) -> Scene:
        """Return a scene through this dataset's :class:`SceneCache`."""
        return self.scenes[scene_id]

    def __getitem__(self, index: int) -> Any:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return self.transform(self.sample(index % len(self)), self.scenes)
