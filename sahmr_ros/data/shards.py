"""Sharded storage of samples and scenes: webdataset tar layout, byte-for-byte deterministic.

Layout of a data directory::

    DIR/manifest.json                 counts, generator version and seed, command line, shards + sha256
    DIR/scenes/<scene_id>.npz         one per scene (:meth:`Scene.to_arrays`), referenced by samples
    DIR/<prefix>-000000.tar           shards: plain tar files in the webdataset key convention
    DIR/<prefix>-000001.tar ...

A shard holds, per sample and in this order, three members sharing the sample's key (webdataset
groups members by the file name up to its first dot)::

    <key>.json     :meth:`Sample.metadata` (UTF-8, sorted keys)
    <key>.npz      :meth:`Sample.to_arrays` without ``image``
    <key>.png      the image, lossless (or <key>.jpg when written with ``image_format="jpg"``)

``webdataset.WebDataset(DIR/<prefix>-{000000..000009}.tar)`` therefore reads the shards as they are;
sahmr_ros reads them with its own reader (no extra dependency).

Determinism: the same samples written with the same options give the same bytes on the same library
versions (zlib, libpng/libjpeg through Pillow). Tar members have mtime 0, uid/gid 0, no user or group
names, mode 0644 and a fixed order; npz members are written with a fixed zip timestamp
(1980-01-01 00:00) and fixed attributes; PNGs carry no time or text chunks; JSON has sorted keys.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import warnings
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Sequence

import numpy as np

from sahmr_ros import constants as C
from sahmr_ros.data.sample import Sample, Scene, check_key
from sahmr_ros.errors import InputError
from sahmr_ros.io import sha256_file

__all__ = [
    "MANIFEST_NAME",
    "SCENES_DIR",
    "ShardReader",
    "ShardWriter",
    "decode_npz",
    "encode_npz",
    "read_manifest",
    "read_scene",
    "sha256_file",
]

MANIFEST_NAME = "manifest.json"
SCENES_DIR = "scenes"
MANIFEST_FORMAT = "sahmr_ros.shards"
MANIFEST_VERSION = 1
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)
_IMAGE_SUFFIXES = ("png", "jpg")
_DEFLATE_MAX_RATIO = 1032  # deflate never expands data more than this: a larger claimed size is a lie


# --- deterministic encoders ---------------------------------------------------------------------------
def encode_npz(arrays: dict[str, np.ndarray], compress: bool = False) -> bytes:
    """Serialise arrays as an ``.npz`` (what ``np.savez`` writes) with fixed zip timestamps.

    Args:
        arrays: name -> array; no object arrays. Members are written in the dict's order.
        compress: deflate (level 6) instead of storing.

    Returns:
        the file's bytes; the same arrays give the same bytes.
    """
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as archive:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_TIME)
            info.compress_type = method
            info.create_system = 3
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue(), compress_type=method, compresslevel=6 if compress else None)
    return buf.getvalue()


def _read_npy_bytes(data: bytes, where: str) -> np.ndarray:
    """Parse one .npy member, checking its header against the bytes present before allocating."""
    fp = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(fp)
        header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = header(fp)
    except (ValueError, EOFError, OSError, SyntaxError) as exc:
        raise InputError(f"{where}: not a readable .npy array ({exc})") from None
    if dtype.hasobject:
        raise InputError(f"{where}: holds an object array, which is never unpickled")
    count = int(np.prod(shape, dtype=object))
    body = data[fp.tell():]
    if count * dtype.itemsize != len(body):
        raise InputError(f"{where}: the header claims shape {shape} {dtype} ({count * dtype.itemsize} bytes), "
                         f"the member holds {len(body)} bytes; the file is truncated or corrupt")
    a = np.frombuffer(body, dtype=dtype, count=count)
    return a.reshape(shape, order="F" if fortran else "C").copy()


def decode_npz(data: bytes | BinaryIO, where: str) -> dict[str, np.ndarray]:
    """Read an ``.npz`` (bytes or a binary file) without pickles, every member's size checked first.

    Raises:
        InputError: naming ``where``: not a zip, a corrupt member, object arrays, sizes that disagree.
    """
    fp = io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data
    out = {}
    try:
        with zipfile.ZipFile(fp) as archive:
            for info in archive.infolist():
                member = f"{where}: member {info.filename!r}"
                if not info.filename.endswith(".npy"):
                    raise InputError(f"{member}: not an .npy array")
                ratio = _DEFLATE_MAX_RATIO if info.compress_type != zipfile.ZIP_STORED else 1
                if info.file_size > ratio * info.compress_size + 1024:
                    raise InputError(f"{member}: claims {info.file_size} bytes from {info.compress_size}; corrupt")
                out[info.filename[:-4]] = _read_npy_bytes(archive.read(info), member)
    except InputError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError, NotImplementedError) as exc:
        raise InputError(f"{where}: not a readable .npz ({type(exc).__name__}: {exc}); the file is truncated "
                         "or corrupt") from None
    return out


def _encode_image(image: np.ndarray, fmt: str, jpeg_quality: int, png_level: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if fmt == "png":
        im.save(buf, format="PNG", compress_level=png_level)
    else:
        im.save(buf, format="JPEG", quality=jpeg_quality, subsampling=0, optimize=False)
    return buf.getvalue()


def _decode_image(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
        with im:
            w, h = im.size
            if w * h > C.MAX_IMAGE_PIXELS:
                raise InputError(f"{where}: image size {w}x{h} exceeds constants.MAX_IMAGE_PIXELS")
            if im.mode != "RGB":
                raise InputError(f"{where}: expected an RGB image, got mode {im.mode!r}")
            return np.array(im, dtype=np.uint8)
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError(f"{where}: not a readable image ({exc}); the file is truncated or corrupt") from None


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, indent=1, allow_nan=False, ensure_ascii=True).encode("utf-8") + b"\n"


def _tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    tar.addfile(info, io.BytesIO(data))


# --- writer -------------------------------------------------------------------------------------------
class ShardWriter:
    """Write samples into tar shards and scenes into ``scenes/``, then ``manifest.json`` on close.

    A new shard starts when the current one holds ``max_samples`` samples or reached ``max_bytes``.
    Use as a context manager; the manifest is written by :meth:`close` (only on success).

    Args:
        out_dir: the data directory (created). Refused when it already holds a manifest.
        prefix: shard file prefix (``DIR/<prefix>-000000.tar``), e.g. the split's name.
        max_samples: samples per shard at most.
        max_bytes: a shard is closed once it holds at least this many bytes.
        image_format: ``"png"`` (lossless, default) or ``"jpg"``.
        jpeg_quality: JPEG quality 1..95 when ``image_format="jpg"``.
        png_level: PNG zlib level 0..9 (speed against size; lossless either way).
        compress: deflate the npz members (smaller, slower).
        generator_version, seed, command: recorded in the manifest (``command``: the argv list).
    """

    def __init__(self, out_dir: str | Path, prefix: str = "shard", max_samples: int = 1000,
                 max_bytes: int = 1 << 30, image_format: str = "png", jpeg_quality: int = 95, png_level: int = 3,
                 compress: bool = False, generator_version: str = "", seed: int = 0,
                 command: Sequence[str] = ()):
        check_key(prefix, "prefix")
        if image_format not in _IMAGE_SUFFIXES:
            raise InputError(f"image_format: expected one of {_IMAGE_SUFFIXES}, got {image_format!r}")
        if not 1 <= int(jpeg_quality) <= 95:
            raise InputError(f"jpeg_quality: expected 1..95, got {jpeg_quality}")
        if max_samples < 1 or max_bytes < 1:
            raise InputError(f"max_samples and max_bytes: expected >= 1, got {max_samples} and {max_bytes}")
        self.out_dir = Path(out_dir)
        if (self.out_dir / MANIFEST_NAME).exists():
            raise InputError(f"{self.out_dir / MANIFEST_NAME}: already exists; write into a new directory")
        (self.out_dir / SCENES_DIR).mkdir(parents=True, exist_ok=True)
        self.prefix, self.max_samples, self.max_bytes = prefix, int(max_samples), int(max_bytes)
        self.image_format, self.jpeg_quality, self.png_level = image_format, int(jpeg_quality), int(png_level)
        self.compress = bool(compress)
        self.generator_version, self.seed, self.command = str(generator_version), int(seed), list(command)
        self._tar: tarfile.TarFile | None = None
        self._file: BinaryIO | None = None
        self._shards: list[dict] = []
        self._scenes: dict[str, dict] = {}
        self._keys: set[str] = set()
        self._samples = self._persons = 0
        self._per_category: Counter = Counter()
        self._per_split: dict[str, Counter] = {}
        self._closed = False

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self._close_shard()

    def write_scene(self, scene: Scene) -> Path:
        """Write ``scenes/<scene_id>.npz`` (once per id; writing the same id again is refused)."""
        arrays = scene.to_arrays()
        if scene.scene_id in self._scenes:
            raise InputError(f"scene.scene_id: {scene.scene_id!r} was already written")
        path = self.out_dir / SCENES_DIR / f"{scene.scene_id}.npz"
        data = encode_npz(arrays, compress=self.compress)
        path.write_bytes(data)
        self._scenes[scene.scene_id] = {"id": scene.scene_id, "path": f"{SCENES_DIR}/{path.name}",
                                        "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                        "points": int(len(scene.cloud))}
        return path

    def write(self, sample: Sample) -> None:
        """Append one sample to the current shard (a new shard starts when it is full)."""
        if self._closed:
            raise InputError("ShardWriter: already closed")
        arrays = sample.to_arrays()  # validates
        if sample.key in self._keys:
            raise InputError(f"sample.key: {sample.key!r} was already written; keys must be unique")
        image = arrays.pop("image")
        members = [(f"{sample.key}.json", _json_bytes(sample.metadata())),
                   (f"{sample.key}.npz", encode_npz(arrays, compress=self.compress)),
                   (f"{sample.key}.{self.image_format}",
                    _encode_image(image, self.image_format, self.jpeg_quality, self.png_level))]
        if self._tar is None:
            name = f"{self.prefix}-{len(self._shards):06d}.tar"
            self._file = open(self.out_dir / name, "wb")
            self._tar = tarfile.open(fileobj=self._file, mode="w", format=tarfile.GNU_FORMAT)
            self._shards.append({"path": name, "samples": 0, "persons": 0})
        for name, data in members:
            _tar_member(self._tar, name, data)
        self._keys.add(sample.key)
        entry = self._shards[-1]
        entry["samples"] += 1
        entry["persons"] += len(sample.persons)
        self._samples += 1
        self._persons += len(sample.persons)
        self._per_category.update(p.category for p in sample.persons)
        split = self._per_split.setdefault(sample.split, Counter())
        split.update(samples=1, persons=len(sample.persons))
        if entry["samples"] >= self.max_samples or self._file.tell() >= self.max_bytes:
            self._close_shard()

    def _close_shard(self) -> None:
        if self._tar is None:
            return
        self._tar.close()
        self._file.close()
        path = self.out_dir / self._shards[-1]["path"]
        self._shards[-1].update(bytes=path.stat().st_size, sha256=sha256_file(path))
        self._tar = self._file = None

    def manifest(self) -> dict:
        """Return the manifest as it stands (the shard being written has no sha256 yet)."""
        return {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "generator_version": self.generator_version,
            "seed": self.seed,
            "command": self.command,
            "image_format": self.image_format,
            "counts": {
                "samples": self._samples,
                "persons": self._persons,
                "scenes": len(self._scenes),
                "per_category": dict(sorted(self._per_category.items())),
                "per_split": {k: dict(sorted(v.items())) for k, v in sorted(self._per_split.items())},
            },
            "shards": list(self._shards),
            "scenes": [self._scenes[k] for k in sorted(self._scenes)],
        }

    def close(self) -> Path:
        """Close the last shard and write ``manifest.json``; returns its path. Idempotent."""
        path = self.out_dir / MANIFEST_NAME
        if not self._closed:
            self._close_shard()
            self._closed = True
            path.write_bytes(_json_bytes(self.manifest()))
        return path


# --- reader -------------------------------------------------------------------------------------------
def read_manifest(root: str | Path) -> dict:
    """Read and check ``DIR/manifest.json``.

    Raises:
        InputError: missing, unreadable or of another format, naming the file.
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise InputError(f"{path}: not found; expected a data directory written by sahmr synth (ShardWriter)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{path}: not a sahmr_ros shard manifest (format {manifest.get('format')!r})"
                         if isinstance(manifest, dict) else f"{path}: expected a JSON object")
    if manifest.get("format_version") != MANIFEST_VERSION:
        raise InputError(f"{path}: format version {manifest.get('format_version')}, this sahmr_ros reads "
                         f"{MANIFEST_VERSION}")
    for key in ("shards", "scenes", "counts"):
        if key not in manifest:
            raise InputError(f"{path}: missing field {key!r}")
    return manifest


def read_scene(root: str | Path, scene_id: str) -> Scene:
    """Load ``DIR/scenes/<scene_id>.npz``.

    Raises:
        InputError: missing or corrupt file, naming it.
    """
    check_key(scene_id, "scene_id")
    path = Path(root) / SCENES_DIR / f"{scene_id}.npz"
    if not path.is_file():
        raise InputError(f"{path}: scene {scene_id!r} not found")
    with open(path, "rb") as f:
        return Scene.from_arrays(decode_npz(f, str(path)), where=str(path))


def decode_sample(members: dict[str, bytes], key: str, where: str) -> Sample:
    """Build a :class:`Sample` from one key's tar members (``{"json": ..., "npz": ..., "png"|"jpg": ...}``)."""
    missing = [s for s in ("json", "npz") if s not in members]
    images = [s for s in _IMAGE_SUFFIXES if s in members]
    if missing or len(images) != 1:
        raise InputError(f"{where}: sample {key!r} is incomplete: has {sorted(members)}, expected json, npz and "
                         "one of png / jpg; the shard is truncated or corrupt")
    try:
        metadata = json.loads(members["json"].decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: {key}.json is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise InputError(f"{where}: {key}.json must hold a JSON object")
    arrays = decode_npz(members["npz"], f"{where}: {key}.npz")
    arrays["image"] = _decode_image(members[images[0]], f"{where}: {key}.{images[0]}")
    sample = Sample.from_arrays(arrays, metadata, where=f"{where}: {key}")
    if sample.key != key:
        raise InputError(f"{where}: {key}.json names the sample {sample.key!r}")
    return sample


def iter_tar_groups(path: Path) -> Iterator[tuple[str, dict[str, bytes]]]:
    """Yield ``(key, {suffix: bytes})`` per sample of a tar shard, in file order (webdataset grouping).

    Raises:
        InputError: naming the file, when it is truncated or not a tar, or a key appears twice.
    """
    seen: set[str] = set()
    key, group = None, {}
    try:
        with tarfile.open(path, mode="r|") as tar:
            for info in tar:
                if not info.isfile():
                    continue
                base = info.name.rsplit("/", 1)[-1]
                k, _, suffix = base.partition(".")
                data = tar.extractfile(info).read()
                if len(data) != info.size:
                    raise InputError(f"{path}: member {info.name!r} is truncated")
                if k != key:
                    if key is not None:
                        yield key, group
                    if k in seen:
                        raise InputError(f"{path}: sample key {k!r} appears twice (members not grouped)")
                    seen.add(k)
                    key, group = k, {}
                group[suffix] = data
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InputError(f"{path}: not a readable tar shard ({type(exc).__name__}: {exc}); the file is truncated "
                         "or corrupt; regenerate it") from None
    if key is not None:
        yield key, group


class ShardReader:
    """Read a data directory written by :class:`ShardWriter`.

    Args:
        root: the data directory (holding ``manifest.json``).
        verify: check each shard's sha256 against the manifest before reading it.
    """

    def __init__(self, root: str | Path, verify: bool = False):
        self.root = Path(root)
        self.manifest = read_manifest(self.root)
        self.verify = verify

    @property
    def shard_paths(self) -> list[Path]:
        """Paths of the shards, in manifest order."""
        return [self.root / s["path"] for s in self.manifest["shards"]]

    def scene_ids(self) -> list[str]:
        """Ids of the scenes of the manifest."""
        return [s["id"] for s in self.manifest["scenes"]]

    def scene(self, scene_id: str) -> Scene:
        """Load the scene with this id; no caching here (see :class:`sahmr_ros.data.dataset.SceneCache`)."""
        return read_scene(self.root, scene_id)

    def _entry(self, path: Path) -> dict | None:
        for s in self.manifest["shards"]:
            if self.root / s["path"] == Path(path):
                return s
        return None

    def iter_shard(self, path: str | Path, select: Callable[[int], bool] | None = None) -> Iterator[Sample]:
        """Decode the samples of one shard in order; checks the count (and sha256) from the manifest.

        Args:
            path: the shard.
            select: ``select(i)`` says whether to decode the shard's i-th sample (None: all); the others
                are skipped without decoding.

        Raises:
            InputError: naming the shard, for a missing, truncated or corrupt file.
        """
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: shard not found (listed in {self.root / MANIFEST_NAME})")
        entry = self._entry(path)
        if self.verify and entry is not None and sha256_file(path) != entry.get("sha256"):
            raise InputError(f"{path}: sha256 differs from the manifest's; the file is corrupt; regenerate it")
        count = 0
        for key, members in iter_tar_groups(path):
            if select is None or select(count):
                yield decode_sample(members, key, str(path))
            count += 1
        if entry is not None and count != entry.get("samples"):
            raise InputError(f"{path}: holds {count} samples, the manifest lists {entry.get('samples')}; the file "
                             "is truncated or corrupt")

    def __iter__(self) -> Iterator[Sample]:
        """All samples, shard after shard."""
        for path in self.shard_paths:
            yield from self.iter_shard(path)

    def __len__(self) -> int:
        return int(self.manifest["counts"]["samples"])
