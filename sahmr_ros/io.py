"""Readers of a user's own input files, and writers of outputs, for ``sahmr infer``.

Every reader raises :class:`sahmr_ros.errors.InputError` with a message that names the file, the
field and what is expected; no parser exception (KeyError, ValueError, YAMLError, ...) escapes.

Frames: camera intrinsics are for the camera optical frame (x right, y down, z forward); poses are
``T_map_camera`` (4, 4), mapping camera points into the map (REP-103, z up); clouds are in the map
frame, metres.

Formats read:

* **camera** (:func:`read_camera`), ``.yaml`` / ``.yml`` / ``.json``:

  - ROS ``camera_calibration`` / ``camera_info_manager`` YAML: ``image_width``, ``image_height``,
    ``camera_matrix: {rows: 3, cols: 3, data: [9]}``, ``distortion_model``,
    ``distortion_coefficients: {rows, cols, data}``;
  - ``sensor_msgs/CameraInfo`` as echoed by ``ros2 topic echo --once``: ``width``, ``height``,
    ``k: [9]``, ``d: [...]``, ``distortion_model``;
  - simple: ``K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (or 9 numbers) or ``fx, fy, cx, cy``; optional
    ``dist`` / ``distortion`` / ``D`` list (OpenCV order k1, k2, p1, p2[, k3[, k4, k5, k6]]),
    ``width``, ``height``, ``distortion_model`` / ``model``.

  :func:`undistort_image` handles ``plumb_bob`` (5 coefficients), ``rational_polynomial`` (8) and
  ``equidistant`` (4, the fisheye model); fewer coefficients are zero-padded, more are accepted when
  the extra ones are zero; any model whose coefficients are all zero passes through unchanged; the
  rest is refused by :func:`normalise_distortion`, naming the field, the model and the count.
* **pose** (:func:`read_pose`): a string of 16 numbers (4x4 row-major), 12 (3x4) or 7
  (``tx ty tz qx qy qz qw``, ROS quaternion order), separated by commas or spaces; or a file
  ``.txt`` (the same numbers), ``.npy`` ((4, 4), (3, 4), (16,), (12,) or (7,)), ``.json`` / ``.yaml``
  (a nested list, or a mapping with ``T_map_camera`` / ``matrix`` / ``pose`` / ``transform``, or
  geometry_msgs style ``position`` + ``orientation`` / ``translation`` + ``rotation``).
* **point cloud** (:func:`read_point_cloud`): a prepared scene ``.npz`` (``sahmr scene prepare``, or a
  ``sahmr synth`` scene: its ``cloud``), ``.npz`` of points (key ``points`` or the only (N, 3) array),
  ``.npy`` (N, 3), and the map formats of :mod:`sahmr_ros.maps.readers`: ``.ply`` (ascii, binary little
  / big endian), ``.pcd`` (ascii, binary, binary_compressed), ``.obj``, ``.glb`` / ``.gltf``, ``.e57``,
  ``.las`` / ``.laz``. Meshes can be sampled on their surface at 2 cm with ``sample_mesh_surface=True``.
* **boxes** (:func:`read_boxes`): one ``"x1,y1,x2,y2"`` string per ``--box``.

Formats written: :func:`write_mesh` (``.ply`` binary little endian, or ``.obj``) and
:func:`write_labelled_points_ply` (binary little-endian PLY: ``x y z`` float, ``label`` int,
``red green blue`` uchar).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError, MessageError
from sahmr_ros.geometry import check_intrinsics, check_pose

__all__ = [
    "Camera",
    "sha256_file",
    "DISTORTION_MODELS",
    "normalise_distortion",
    "read_image",
    "read_camera",
    "undistort_image",
    "read_pose",
    "read_point_cloud",
    "read_boxes",
    "write_mesh",
    "write_labelled_points_ply",
]

# Distortion models undistort_image handles -> their coefficients, in order (ROS camera_info / OpenCV).
DISTORTION_MODELS = {
    "plumb_bob": ("k1", "k2", "p1", "p2", "k3"),
    "rational_polynomial": ("k1", "k2", "p1", "p2", "k3", "k4", "k5", "k6"),
    "equidistant": ("k1", "k2", "k3", "k4"),  # fisheye: theta_d = theta (1 + k1 theta^2 + ... + k4 theta^8)
}
UNDISTORT_MODELS = tuple(DISTORTION_MODELS)
POSE_SUFFIXES = (".txt", ".npy", ".json", ".yaml", ".yml")
CLOUD_SUFFIXES = (".npz", ".npy", ".ply", ".pcd", ".obj", ".glb", ".gltf", ".e57", ".las", ".laz")


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------
def sha256_file(path: str | Path) -> str:
    """Return the hex sha256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _numbers(value: Any, where: str, what: str) -> np.ndarray:
    """Flatten a (nested) list / string of numbers to float64, or raise naming ``where``."""
    if isinstance(value, str):
        tokens = [t for t in re.split(r"[\s,;\[\]()]+", value.strip()) if t]
    else:
        tokens = np.asarray(value, dtype=object).reshape(-1).tolist() if value is not None else []
    out = []
    for t in tokens:
        if isinstance(t, bool) or isinstance(t, (list, dict)):
            raise InputError(f"{where}: expected {what}, got {value!r}")
        try:
            out.append(float(t))
        except (TypeError, ValueError):
            raise InputError(f"{where}: expected {what}, got non-number {t!r}") from None
    return np.asarray(out, dtype=np.float64)


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} file not found")
    return path


def _load_mapping(path: Path) -> Any:
    """Parse a YAML or JSON file by suffix; syntax errors become InputError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix.lower() == ".json":
            return json.loads(text)
        # OpenCV FileStorage YAML starts with a %YAML:1.0 directive that PyYAML rejects.
        text = re.sub(r"^%YAML:1\.0\s*\n", "", text)
        return yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid {path.suffix.lstrip('.').upper()}: {e}") from None


_DEFLATE_MAX_RATIO = 1032  # deflate never expands data more than this: a larger claimed size is a lie


def _check_npy_header(fp, available: int, where: str) -> None:
    """Read a .npy header from ``fp`` and check it before numpy allocates what it claims.

    Refuses object arrays (they would need unpickling, which is never done) and a shape whose bytes
    exceed ``available`` (the bytes the file holds after the header's start).
    """
    start = fp.tell()
    try:
        version = np.lib.format.read_magic(fp)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
            np.lib.format.read_array_header_2_0  # 3.0 differs only in the header's text encoding
        shape, _, dtype = read_header(fp)
    except (ValueError, EOFError, OSError, SyntaxError) as e:
        raise InputError(f"{where}: not a readable .npy array ({e})") from None
    if dtype.hasobject:
        raise InputError(f"{where}: holds an object array (dtype {dtype}), which is never unpickled; save a "
                         "numeric array (np.save(..., np.asarray(points, dtype=np.float64)))")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if nbytes > available - (fp.tell() - start):
        raise InputError(f"{where}: the header claims shape {shape} {dtype} ({nbytes} bytes) but only "
                         f"{available} bytes are there; the file is truncated or corrupt")


def _load_numpy(path: Path) -> Any:
    """``np.load`` a .npy (an array) or .npz (a dict of arrays) without pickles, every header checked first.

    Raises:
        InputError: empty or unreadable file, object arrays, a header claiming more data than the
            file holds.
    """
    import zipfile

    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty; expected an array saved with np.save / np.savez")
    try:
        if suffix == ".npz":
            with zipfile.ZipFile(path) as archive:
                for info in archive.infolist():
                    where = f"{path}: member {info.filename!r}"
                    ratio = _DEFLATE_MAX_RATIO if info.compress_type != zipfile.ZIP_STORED else 1
                    if info.file_size > ratio * info.compress_size + 1024:
                        raise InputError(f"{where}: claims {info.file_size} bytes from {info.compress_size} "
                                         "compressed; the file is corrupt")
                    with archive.open(info) as member:
                        _check_npy_header(member, info.file_size, where)
            with np.load(path, allow_pickle=False) as loaded:
                return {k: loaded[k] for k in loaded.files}
        with open(path, "rb") as f:
            _check_npy_header(f, path.stat().st_size, str(path))
        return np.load(path, allow_pickle=False)
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise InputError(f"{path}: not a readable {suffix} file ({type(e).__name__}: {e}); save the array with "
                         "np.save / np.savez") from None


# ------------------------------------------------------------------------------------------------
# camera
# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Camera:
    """Pinhole camera with optional lens distortion (optical frame: x right, y down, z forward).

    Attributes:
        K: (3, 3) float64 intrinsics in pixels.
        distortion: (n,) float64 coefficients in the model's order (:data:`DISTORTION_MODELS`: k1, k2,
            p1, p2, k3, k4, k5, k6; equidistant k1..k4), as read; may be empty.
        width, height: image size in pixels the calibration is for, or None when not given.
        model: distortion model name (``plumb_bob``, ``rational_polynomial``, ...).
        source: the file it was read from (for messages).
    """

    K: np.ndarray
    distortion: np.ndarray
    width: int | None
    height: int | None
    model: str
    source: str = ""

    @property
    def has_distortion(self) -> bool:
        """True when any distortion coefficient is non-zero."""
        return bool(np.any(self.distortion != 0))


def _field(d: dict, keys: Sequence[str]) -> tuple[str | None, Any]:
    for k in keys:
        if k in d:
            return k, d[k]
    return None, None


def _image_size(d: dict, where: str, keys: Sequence[str]) -> int | None:
    key, value = _field(d, keys)
    if key is None or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value <= 0:
        raise InputError(f"{where}: field `{key}`: expected a positive integer (pixels), got {value!r}")
    return int(value)


def _ros_matrix(d: dict, key: str, where: str, shape: tuple[int, int] | None) -> np.ndarray:
    """``{rows, cols, data}`` of a ROS / OpenCV YAML matrix, checked against ``shape``."""
    m = d[key]
    if not isinstance(m, dict) or "data" not in m:
        raise InputError(f"{where}: field `{key}`: expected a mapping with `rows`, `cols` and `data`, got {m!r}")
    data = _numbers(m["data"], f"{where}: field `{key}.data`", "a list of numbers")
    rows, cols = m.get("rows"), m.get("cols")
    if shape is not None:
        for name, got, want in (("rows", rows, shape[0]), ("cols", cols, shape[1])):
            if got is not None and got != want:
                raise InputError(f"{where}: field `{key}.{name}`: expected {want}, got {got!r}")
        if data.size != shape[0] * shape[1]:
            raise InputError(f"{where}: field `{key}.data`: expected {shape[0] * shape[1]} numbers "
                             f"(row-major {shape[0]}x{shape[1]}), got {data.size}")
        return data.reshape(shape)
    if rows is not None and cols is not None and data.size != rows * cols:
        raise InputError(f"{where}: field `{key}.data`: {data.size} numbers but rows x cols = {rows} x {cols}")
    return data


def _model_list() -> str:
    return ", ".join(f"{m} ({len(c)}: {' '.join(c)})" for m, c in DISTORTION_MODELS.items())


def normalise_distortion(model: str | None, coeffs: Any, field: str, topic: str | None = None,
                         fix: str = "pass the coefficients of one of these models, or a rectified image with "
                                    "zero distortion") -> tuple[str, np.ndarray]:
    """Decide what a distortion model and coefficient vector mean: the one rule for files and camera_info.

    Coefficients are in the ROS / OpenCV order of :data:`DISTORTION_MODELS`. Fewer than the model
    takes are zero-padded (``plumb_bob`` with k1 k2 p1 p2); more are accepted when the extra ones
    are zero (a driver that always sends 14). All-zero coefficients mean no distortion, under any
    model name. Without a model name, the count up to the last non-zero coefficient picks
    ``plumb_bob`` (<= 5) or ``rational_polynomial`` (<= 8).

    Args:
        model: the model name (case and surrounding spaces ignored); None or "" when not given.
        coeffs: (n,) numbers.
        field: named in errors (``"camera_info.d"``, ``"cam.yaml: field `distortion_coefficients`"``).
        topic: the message's topic: errors are then :class:`MessageError` ``(field, detail, topic)``.
        fix: what the user should do, appended to errors.

    Returns:
        ``(model, coefficients)``: the model's name and its (len(DISTORTION_MODELS[model]),) float64
        coefficients; ``(model, (0,))`` when every coefficient is zero (nothing to undistort).

    Raises:
        InputError (MessageError with ``topic``): non-finite coefficients, an unknown model with
            non-zero coefficients, or non-zero coefficients beyond what the model takes.
    """
    def fail(detail: str) -> InputError:
        return MessageError(field, detail, topic) if topic is not None else InputError(f"{field}: {detail}")

    values = _numbers(coeffs, field, "a list of distortion coefficients")
    if not np.isfinite(values).all():
        raise fail(f"contains NaN or inf ({values.tolist()}); pass finite coefficients")
    nonzero = np.flatnonzero(values)
    used = int(nonzero[-1]) + 1 if nonzero.size else 0
    name = model.strip().lower() if isinstance(model, str) else ""
    if not name:
        name = "plumb_bob" if used <= 5 else "rational_polynomial" if used <= 8 else ""
        if not name:
            raise fail(f"no distortion model given and {values.size} coefficients, the last non-zero at position "
                       f"{used}; name the model (distortion_model): {_model_list()}; or {fix}")
    if used == 0:
        return name, np.zeros(0)
    names = DISTORTION_MODELS.get(name)
    if names is None:
        raise fail(f"distortion model {name!r} with {values.size} coefficients (non-zero) is not supported; "
                   f"supported: {_model_list()}; or {fix}")
    if used > len(names):
        raise fail(f"model {name} takes {len(names)} coefficients ({' '.join(names)}), got {values.size} with "
                   f"non-zero values beyond the {len(names)}th ({values[len(names):used].tolist()}); {fix}")
    out = np.zeros(len(names))
    out[:min(values.size, len(names))] = values[:len(names)]
    return name, out


def read_camera(path: str | Path) -> Camera:
    """Read camera intrinsics and distortion from a YAML or JSON file (layouts: module docstring).

    Raises:
        InputError: missing file, unknown layout, malformed or invalid field (named in the message).
    """
    path = _existing_file(path, "camera")
    if path.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise InputError(f"{path}: camera file must be .yaml, .yml or .json, got {path.suffix!r}")
    d = _load_mapping(path)
    where = str(path)
    if not isinstance(d, dict):
        raise InputError(f"{where}: expected a mapping of camera fields, got {type(d).__name__}")

    if "camera_matrix" in d:  # ROS camera_calibration YAML
        K, K_field = _ros_matrix(d, "camera_matrix", where, (3, 3)), "camera_matrix"
    elif (key := _field(d, ("K", "k", "intrinsics"))[0]) is not None:
        K_field = key
        K = _numbers(d[key], f"{where}: field `{key}`", "a 3x3 matrix (nested list or 9 numbers)")
        if K.size != 9:
            raise InputError(f"{where}: field `{key}`: expected 9 numbers (3x3 row-major), got {K.size}")
        K = K.reshape(3, 3)
    elif all(k in d for k in ("fx", "fy", "cx", "cy")):
        K_field = "fx, fy, cx, cy"
        v = {k: _numbers(d[k], f"{where}: field `{k}`", "a number") for k in ("fx", "fy", "cx", "cy")}
        for k, a in v.items():
            if a.size != 1:
                raise InputError(f"{where}: field `{k}`: expected one number, got {d[k]!r}")
        K = np.array([[v["fx"][0], 0.0, v["cx"][0]], [0.0, v["fy"][0], v["cy"][0]], [0.0, 0.0, 1.0]])
    else:
        missing = "camera_matrix" if any(k in d for k in ("image_width", "distortion_coefficients",
                                                          "camera_name", "distortion_model")) else "K"
        raise InputError(
            f"{where}: field `{missing}` missing: expected `camera_matrix: {{rows: 3, cols: 3, data: [9 numbers]}}` "
            f"(ROS camera_info YAML), `K: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`, or `fx, fy, cx, cy`; "
            f"found keys {sorted(map(str, d))}")
    K = check_intrinsics(K, name=f"{where}: field `{K_field}`")

    if "distortion_coefficients" in d:
        dist_field = "distortion_coefficients"
        dist = _ros_matrix(d, dist_field, where, None) if isinstance(d[dist_field], dict) else \
            _numbers(d[dist_field], f"{where}: field `{dist_field}`", "a list of numbers")
    else:
        dist_field, value = _field(d, ("d", "D", "dist", "distortion", "dist_coeffs"))
        dist = (np.zeros(0) if dist_field is None or value is None else
                _numbers(value, f"{where}: field `{dist_field}`", "a list of distortion coefficients"))
    model_field, model = _field(d, ("distortion_model", "model"))
    if model is not None and not isinstance(model, str):
        raise InputError(f"{where}: field `{model_field}`: expected a model name string, got {model!r}")
    model, _ = normalise_distortion(model, dist, f"{where}: field `{dist_field or 'distortion_coefficients'}`",
                                    fix="fix the camera file, or pass a rectified image with zero distortion")

    width = _image_size(d, where, ("image_width", "width"))
    height = _image_size(d, where, ("image_height", "height"))
    return Camera(K=K, distortion=dist, width=width, height=height, model=model, source=where)


def _distort_normalised(x: np.ndarray, y: np.ndarray, model: str,
                        coeffs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply ``model`` (coefficients from :func:`normalise_distortion`) to normalised coordinates."""
    if model == "equidistant":  # OpenCV fisheye: the angle to the axis is distorted, not the radius
        k1, k2, k3, k4 = coeffs
        r = np.hypot(x, y)
        theta = np.arctan(r)
        t2 = theta * theta
        theta_d = theta * (1 + t2 * (k1 + t2 * (k2 + t2 * (k3 + t2 * k4))))
        scale = np.divide(theta_d, r, out=np.ones_like(r), where=r > 1e-12)
        return x * scale, y * scale
    k1, k2, p1, p2, k3, k4, k5, k6 = np.concatenate([coeffs, np.zeros(8 - coeffs.size)])
    r2 = x * x + y * y
    radial = (1 + r2 * (k1 + r2 * (k2 + r2 * k3))) / (1 + r2 * (k4 + r2 * (k5 + r2 * k6)))
    xd = x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x * x)
    yd = y * radial + p1 * (r2 + 2 * y * y) + 2 * p2 * x * y
    return xd, yd


@functools.lru_cache(maxsize=4)
def _undistortion_coords(k: tuple, model: str, coeffs: tuple, H: int, W: int) -> np.ndarray:
    """Return where each output pixel samples the distorted image: (2, H, W) (row, column).

    Cached: a camera stream undistorts every frame with the same calibration (the node's hot path).
    The array is read-only, as it is shared between calls.
    """
    K = np.asarray(k).reshape(3, 3)
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    y = (v - K[1, 2]) / K[1, 1]
    x = (u - K[0, 2] - K[0, 1] * y) / K[0, 0]
    xd, yd = _distort_normalised(x, y, model, np.asarray(coeffs))
    coords = np.stack([K[1, 1] * yd + K[1, 2], K[0, 0] * xd + K[0, 1] * yd + K[0, 2]])
    coords.flags.writeable = False
    return coords


def undistort_image(image: np.ndarray, camera: Camera) -> tuple[np.ndarray, np.ndarray]:
    """Remove lens distortion, keeping the intrinsics K.

    Each output pixel is back-projected through K to a normalised ray, the forward distortion model
    moves it to where the lens imaged it, and the input is sampled there bilinearly (black outside).

    Args:
        image: (H, W, 3) uint8.
        camera: from :func:`read_camera`.

    Returns:
        (image (H, W, 3) uint8, K_new (3, 3)); the input array itself when there is no distortion.

    Raises:
        InputError: wrong image shape / dtype, image size differs from the calibration's, or a
            distortion :func:`normalise_distortion` refuses (another model, extra non-zero coefficients).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image: expected (H, W, 3) uint8, got shape {image.shape} dtype {image.dtype}")
    H, W = image.shape[:2]
    if camera.width is not None and camera.height is not None and (W, H) != (camera.width, camera.height):
        raise InputError(f"image: {W}x{H} pixels but the camera file {camera.source} is calibrated for "
                         f"{camera.width}x{camera.height}; pass an image of that size or a matching calibration")
    model, coeffs = normalise_distortion(camera.model, camera.distortion,
                                         f"{camera.source}: distortion" if camera.source else "camera.distortion")
    if coeffs.size == 0:
        return image, camera.K.copy()
    K = camera.K
    coords = _undistortion_coords(tuple(K.reshape(-1).tolist()), model, tuple(coeffs.tolist()), H, W)
    out = np.empty_like(image)
    for c in range(3):
        sampled = map_coordinates(image[..., c].astype(np.float32), coords, order=1, mode="constant", cval=0.0)
        out[..., c] = np.clip(np.rint(sampled), 0, 255).astype(np.uint8)
    return out, K.copy()


# ------------------------------------------------------------------------------------------------
# pose
# ------------------------------------------------------------------------------------------------
def _pose_from_numbers(vals: np.ndarray, where: str) -> np.ndarray:
    if vals.size == 16:
        T = vals.reshape(4, 4)
    elif vals.size == 12:
        T = np.vstack([vals.reshape(3, 4), [0.0, 0.0, 0.0, 1.0]])
    elif vals.size == 7:
        if not np.isfinite(vals).all():
            raise InputError(f"{where}: contains NaN or inf; pass a finite pose")
        q = vals[3:]
        norm = np.linalg.norm(q)
        if norm < 1e-9:
            raise InputError(f"{where}: quaternion (qx, qy, qz, qw) = {q.tolist()} is zero; "
                             "expected a rotation quaternion in ROS order x, y, z, w")
        T = np.eye(4)
        T[:3, :3] = Rotation.from_quat(q / norm).as_matrix()  # scipy's default order is x, y, z, w
        T[:3, 3] = vals[:3]
    else:
        raise InputError(f"{where}: expected 16 numbers (4x4 row-major), 12 (3x4) or 7 "
                         f"(tx ty tz qx qy qz qw), got {vals.size}")
    return T


def _xyz(value: Any, keys: str, where: str) -> np.ndarray:
    if isinstance(value, dict):
        missing = [k for k in keys if k not in value]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}; expected keys {', '.join(keys)}")
        value = [value[k] for k in keys]
    vals = _numbers(value, where, f"{len(keys)} numbers ({', '.join(keys)})")
    if vals.size != len(keys):
        raise InputError(f"{where}: expected {len(keys)} numbers ({', '.join(keys)}), got {vals.size}")
    return vals


def _pose_from_object(obj: Any, where: str) -> np.ndarray:
    if isinstance(obj, (list, tuple, str, int, float)):
        return _pose_from_numbers(_numbers(obj, where, "numbers of a pose"), where)
    if isinstance(obj, dict):
        for key in ("T_map_camera", "matrix", "pose", "transform", "T"):
            if key in obj:
                return _pose_from_object(obj[key], f"{where}: field `{key}`")
        for t_key, r_key in (("position", "orientation"), ("translation", "rotation")):
            if t_key in obj or r_key in obj:
                t = _xyz(obj.get(t_key), "xyz", f"{where}: field `{t_key}`")
                q = _xyz(obj.get(r_key), "xyzw", f"{where}: field `{r_key}`")
                return _pose_from_numbers(np.concatenate([t, q]), f"{where}: fields `{t_key}`, `{r_key}`")
        raise InputError(f"{where}: expected a 4x4 list or a mapping with `T_map_camera`, `matrix`, `pose`, "
                         f"`transform`, or `position` + `orientation`; found keys {sorted(map(str, obj))}")
    raise InputError(f"{where}: expected a pose, got {type(obj).__name__}")


def _pose_file(path: Path, what: str = "T_map_camera") -> np.ndarray:
    where = f"{path}: {what}"
    suffix = path.suffix.lower()
    if suffix == ".npy":
        arr = _load_numpy(path)
        if arr.shape not in ((4, 4), (3, 4), (16,), (12,), (7,)) or not np.issubdtype(arr.dtype, np.number):
            raise InputError(f"{where}: expected a numeric array of shape (4, 4), (3, 4), (16,), (12,) "
                             f"or (7,), got shape {arr.shape} dtype {arr.dtype}")
        return _pose_from_numbers(arr.astype(np.float64).reshape(-1), where)
    if suffix in (".json", ".yaml", ".yml"):
        return _pose_from_object(_load_mapping(path), where)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a text file; expected numbers of a pose") from None
    text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return _pose_from_numbers(_numbers(text, where, "numbers of a pose"), where)


def read_pose(text_or_path: str | Path | np.ndarray, what: str = "T_map_camera", option: str = "--pose") -> np.ndarray:
    """Read ``T_map_camera`` from a file, a string of numbers, or an array (formats: module docstring).

    ``what`` and ``option`` name the transform and its command-line option in errors (``sahmr scene
    prepare --transform`` reads ``T_map_input`` with the same syntax).

    Returns:
        (4, 4) float64 rigid transform, checked with :func:`sahmr_ros.geometry.check_pose`.

    Raises:
        InputError: unreadable file, wrong number of values, zero quaternion, non-rigid matrix.
    """
    if isinstance(text_or_path, np.ndarray):
        where = what
        T = _pose_from_numbers(np.asarray(text_or_path, dtype=np.float64).reshape(-1), where)
    elif isinstance(text_or_path, Path) or (
        isinstance(text_or_path, str)
        and (Path(text_or_path).suffix.lower() in POSE_SUFFIXES or Path(text_or_path).is_file())
    ):
        path = _existing_file(text_or_path, "pose")
        where = f"{path}: {what}"
        T = _pose_file(path, what)
    elif isinstance(text_or_path, str):
        where = option
        T = _pose_from_numbers(_numbers(text_or_path, where, "16, 12 or 7 numbers, or a pose file"), where)
    else:
        raise InputError(f"{what}: expected a path, a string of numbers or an array, "
                         f"got {type(text_or_path).__name__}")
    return check_pose(T, name=where)


# ------------------------------------------------------------------------------------------------
# point clouds
# ------------------------------------------------------------------------------------------------
def _scene_file_points(arrays: dict, path: Path) -> np.ndarray | None:
    """Return the cloud of a scene file (``sahmr scene prepare``, ``sahmr synth``'s ``scenes/*.npz``), or None."""
    if "metadata_json" not in arrays or "cloud" not in arrays:
        return None
    from sahmr_ros.data.sample import Scene as StoredScene

    return StoredScene.from_arrays(arrays, where=str(path)).cloud.astype(np.float64)


def read_point_cloud(path: str | Path, sample_mesh_surface: bool = False,
                     spacing: float = C.SCENE_PITCH_M) -> np.ndarray:
    """Read map-frame scene points (formats: module docstring).

    Non-finite rows are kept: :class:`sahmr_ros.scene.Scene` drops and counts them. A prepared scene
    (``sahmr scene prepare``) is returned as stored: already a fixed point of the Scene's voxelisation.

    Args:
        path: .npz (a prepared scene, or points), .npy, or a map file of
            :data:`sahmr_ros.maps.MAP_SUFFIXES` (.ply .pcd .obj .glb .gltf .e57 .las .laz).
        sample_mesh_surface: for a mesh (a file with triangles), add points sampled uniformly on its
            faces, about one per ``spacing``^2 (seeded, so deterministic).
        spacing: metres, default 2 cm (the scene pitch).

    Returns:
        (N, 3) float64 points, metres, map frame.

    Raises:
        InputError: missing file, unsupported suffix or encoding, malformed content, empty cloud.
    """
    from sahmr_ros.maps.readers import read_scene_geometry, sample_surface

    path = _existing_file(path, "point cloud")
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        loaded = _load_numpy(path)
        if suffix == ".npz":
            arrays = loaded
            points = _scene_file_points(arrays, path)
            if points is not None:
                if len(points) == 0:
                    raise InputError(f"{path}: the scene file holds no point; prepare it again from the map")
                return points
            if "points" in arrays:
                key = "points"
            else:
                keys = [k for k, a in arrays.items() if a.ndim == 2 and a.shape[1] == 3]
                if len(keys) != 1:
                    raise InputError(f"{path}: field `points` missing and {len(keys)} arrays of shape (N, 3) "
                                     f"among {sorted(arrays)}; save the cloud under the key `points`")
                key = keys[0]
            points, field = arrays[key], f"field `{key}`"
        else:
            points, field = loaded, "array"
        if points.ndim != 2 or points.shape[1] != 3 or not np.issubdtype(points.dtype, np.number):
            raise InputError(f"{path}: {field}: expected a numeric (N, 3) array, "
                             f"got shape {points.shape} dtype {points.dtype}")
        points = points.astype(np.float64)
    elif suffix in CLOUD_SUFFIXES:
        geometry = read_scene_geometry(path, faces=sample_mesh_surface)
        points = geometry.points
        if geometry.is_mesh:
            points = np.concatenate([points, sample_surface(points, geometry.faces, spacing)], axis=0)
    else:
        raise InputError(f"{path}: unsupported point cloud format {suffix!r}; expected one of "
                         f"{', '.join(CLOUD_SUFFIXES)}")
    if len(points) == 0:
        raise InputError(f"{path}: the point cloud is empty; expected scene points in the map frame")
    return points


# ------------------------------------------------------------------------------------------------
# image
# ------------------------------------------------------------------------------------------------
def read_image(path: str | Path) -> np.ndarray:
    """Read an image file (PNG, JPEG, BMP, TIFF, ...: whatever Pillow reads) as (H, W, 3) uint8 RGB.

    Greyscale and palette images are converted to RGB, an alpha channel is dropped.

    Raises:
        InputError: missing or unreadable file, or a header claiming more than
            ``constants.MAX_IMAGE_PIXELS`` (checked before decoding).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    path = _existing_file(path, "image")
    too_big = (f"exceeds the limit of {C.MAX_IMAGE_PIXELS} pixels (constants.MAX_IMAGE_PIXELS, 8K video fits); "
               "pass a smaller image")
    try:
        with warnings.catch_warnings():  # the size is checked below, against a lower limit than Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
        with im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                raise InputError(f"{path}: 16/32-bit images (mode {im.mode!r}) are not supported; "
                                 "pass an 8-bit RGB or greyscale image")
            width, height = im.size  # from the header: nothing decoded yet
            if width * height > C.MAX_IMAGE_PIXELS:
                raise InputError(f"{path}: image size {width}x{height} = {width * height} pixels {too_big}")
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Image.DecompressionBombError as e:  # Pillow refuses headers above twice its own limit at open
        raise InputError(f"{path}: image size {too_big} ({e})") from None
    except (UnidentifiedImageError, OSError) as e:
        raise InputError(f"{path}: not a readable image ({e}); expected PNG, JPEG or another 8-bit format") from None
    if rgb.shape[0] < 2 or rgb.shape[1] < 2:
        raise InputError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} pixels; expected a camera image")
    return rgb


# ------------------------------------------------------------------------------------------------
# boxes
# ------------------------------------------------------------------------------------------------
def read_boxes(specs: Sequence[str]) -> np.ndarray:
    """Parse ``--box`` arguments ``"x1,y1,x2,y2"`` (pixels) into (N, 4) float64.

    Only parsing happens here: box geometry (order, size, inside the image) is checked by the
    pipeline, which skips a bad box with a reason.

    Raises:
        InputError: a spec without exactly 4 numbers, naming which ``--box`` (1-based) and why.
    """
    boxes = []
    for i, spec in enumerate(specs, 1):
        where = f"--box #{i} ({spec!r})"
        if not isinstance(spec, str):
            raise InputError(f"{where}: expected a string 'x1,y1,x2,y2'")
        vals = _numbers(spec, where, "4 numbers x1,y1,x2,y2 in pixels")
        if vals.size != 4:
            raise InputError(f"{where}: expected 4 numbers x1,y1,x2,y2 in pixels, got {vals.size}")
        boxes.append(vals)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


# ------------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------------
def _check_array(name: str, a: np.ndarray, cols: int) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2 or a.shape[1] != cols:
        raise InputError(f"{name}: expected shape (N, {cols}), got {a.shape}")
    return a


def write_mesh(path: str | Path, vertices: np.ndarray, faces: np.ndarray) -> Path:
    """Write a triangle mesh: ``.ply`` (binary little endian, float32 x y z, int vertex_indices) or ``.obj``.

    Args:
        vertices: (V, 3) metres.
        faces: (F, 3) integer vertex indices in 0..V-1.

    Returns:
        The path written.
    """
    path = Path(path)
    vertices = _check_array("vertices", vertices, 3).astype(np.float64)
    faces = _check_array("faces", faces, 3)
    if faces.size and (not np.issubdtype(faces.dtype, np.integer) or faces.min() < 0 or faces.max() >= len(vertices)):
        raise InputError(f"faces: expected integer indices in 0..{len(vertices) - 1}")
    suffix = path.suffix.lower()
    if suffix == ".ply":
        header = ("ply\nformat binary_little_endian 1.0\ncomment sahmr_ros mesh, map frame, metres\n"
                  f"element vertex {len(vertices)}\nproperty float x\nproperty float y\nproperty float z\n"
                  f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n")
        face_rec = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
        face_rec["n"], face_rec["idx"] = 3, faces
        with open(path, "wb") as f:
            f.write(header.encode("ascii"))
            f.write(vertices.astype("<f4").tobytes())
            f.write(face_rec.tobytes())
    elif suffix == ".obj":
        with open(path, "w", encoding="ascii") as f:
            f.write("# sahmr_ros mesh, map frame, metres\n")
            np.savetxt(f, vertices, fmt="v %.6f %.6f %.6f")
            np.savetxt(f, faces.astype(np.int64) + 1, fmt="f %d %d %d")
    else:
        raise InputError(f"{path}: mesh output must be .ply or .obj, got {suffix!r}")
    return path


def write_labelled_points_ply(path: str | Path, points: np.ndarray, labels: np.ndarray,
                              colors: np.ndarray | None = None) -> Path:
    """Write labelled points as a binary little-endian PLY.

    Properties per vertex: ``x y z`` float32, ``label`` int32, ``red green blue`` uchar.

    Args:
        points: (N, 3) metres.
        labels: (N,) integers (contact labels 0..7, ``constants.CONTACT_PART_NAMES``).
        colors: (N, 3) uint8; default: ``constants.CONTACT_PART_COLORS`` by label (grey outside 0..7).

    Returns:
        The path written.
    """
    path = Path(path)
    points = _check_array("points", points, 3)
    labels = np.asarray(labels)
    if labels.shape != (len(points),) or not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels: expected ({len(points)},) integers, got shape {labels.shape} dtype {labels.dtype}")
    if colors is None:
        palette = np.asarray(C.CONTACT_PART_COLORS, dtype=np.uint8)
        known = (labels >= 0) & (labels < len(palette))
        colors = np.full((len(points), 3), 128, dtype=np.uint8)
        colors[known] = palette[labels[known]]
    colors = _check_array("colors", colors, 3)
    if len(colors) != len(points) or colors.dtype != np.uint8:
        raise InputError(f"colors: expected ({len(points)}, 3) uint8, got shape {colors.shape} dtype {colors.dtype}")
    rec = np.empty(len(points), dtype=[("xyz", "<f4", (3,)), ("label", "<i4"), ("rgb", "u1", (3,))])
    rec["xyz"], rec["label"], rec["rgb"] = points, labels, colors
    header = ("ply\nformat binary_little_endian 1.0\ncomment sahmr_ros labelled points, map frame, metres\n"
              f"element vertex {len(points)}\nproperty float x\nproperty float y\nproperty float z\n"
              "property int label\nproperty uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n")
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(rec.tobytes())
    return path
