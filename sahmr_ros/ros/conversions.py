"""ROS messages <-> numpy, for the node (rclpy) and the offline bag tool (rosbags) alike.

Readers are duck-typed on message attributes, so rclpy messages, rosbags dataclasses and plain
objects with the same fields all work; primitive arrays may be numpy arrays (rosbags),
``array.array`` (rclpy), ``bytes`` or lists. Every malformed input raises
:class:`sahmr_ros.errors.MessageError` naming the field (``point_cloud.row_step``) and the fix;
no other exception escapes a reader.

Writers build messages through a :class:`sahmr_ros.ros.messages.MessageFactory`.

Frames and units: images and intrinsics are in the camera optical frame (x right, y down,
z forward), pixels; clouds, meshes, contacts and :class:`HumanMeshArray` are in the frame of the
header passed in -- the node passes the map frame (REP-103, z up) -- in metres.

Readers: :func:`image_to_rgb`, :func:`compressed_image_to_rgb`, :func:`pointcloud2_to_xyz`,
:func:`camera_info_to_intrinsics`, :func:`detections_to_boxes`, :func:`transform_to_matrix`.
Writers: :func:`xyz_to_pointcloud2`, :func:`contacts_to_pointcloud2`, :func:`mesh_markers`,
:func:`human_mesh_array`, :func:`diagnostics`; and the inverses of the readers, for recordings and
tests: :func:`rgb_to_image`, :func:`intrinsics_to_camera_info`, :func:`boxes_to_detections`,
:func:`matrix_to_transform`.
"""

from __future__ import annotations

import array
import dataclasses
import io
import math
import operator
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError, MessageError
from sahmr_ros.ros.messages import MessageFactory, duration_from_seconds, ns_to_time

__all__ = [
    "IMAGE_ENCODINGS",
    "MESH_PALETTE",
    "CameraIntrinsics",
    "Detections",
    "image_to_rgb",
    "compressed_image_to_rgb",
    "pointcloud2_to_xyz",
    "xyz_to_pointcloud2",
    "contacts_to_pointcloud2",
    "camera_info_to_intrinsics",
    "detections_to_boxes",
    "transform_to_matrix",
    "rgb_to_image",
    "intrinsics_to_camera_info",
    "boxes_to_detections",
    "matrix_to_transform",
    "marker_id",
    "mesh_markers",
    "human_mesh_array",
    "diagnostics",
]

# encoding -> (channels, indices of R, G, B)
IMAGE_ENCODINGS = {
    "rgb8": (3, (0, 1, 2)),
    "bgr8": (3, (2, 1, 0)),
    "rgba8": (4, (0, 1, 2)),
    "bgra8": (4, (2, 1, 0)),
    "mono8": (1, (0, 0, 0)),
}
_ENCODINGS_TEXT = "rgb8, bgr8, rgba8, bgra8 or mono8"

# sensor_msgs/PointField datatypes
_POINTFIELD_NAMES = {1: "INT8", 2: "UINT8", 3: "INT16", 4: "UINT16", 5: "INT32", 6: "UINT32",
                     7: "FLOAT32", 8: "FLOAT64"}
_FLOAT32, _UINT32 = 7, 6
_XYZ_FORMATS = {7: "f4", 8: "f8"}

_MARKER_TRIANGLE_LIST, _MARKER_ADD, _MARKER_DELETEALL = 11, 0, 3
_DIAGNOSTIC_LEVELS = {"OK": 0, "WARN": 1, "ERROR": 2, "STALE": 3}

# Per-person mesh colours (RGB 0..1), picked by marker id.
MESH_PALETTE = (
    (0.65, 0.74, 0.86),
    (0.95, 0.60, 0.45),
    (0.55, 0.80, 0.55),
    (0.85, 0.65, 0.90),
    (0.95, 0.85, 0.45),
    (0.50, 0.80, 0.85),
    (0.90, 0.55, 0.65),
    (0.75, 0.75, 0.60),
)


# ------------------------------------------------------------------------------------------------
# field access helpers
# ------------------------------------------------------------------------------------------------
def _get(msg: Any, name: str, where: str, topic: str | None, expected: str) -> Any:
    try:
        return getattr(msg, name)
    except AttributeError:
        raise MessageError(f"{where}.{name}", f"missing (expected a {expected} message)", topic) from None


def _uint(value: Any, field: str, topic: str | None) -> int:
    if isinstance(value, (bool, np.bool_)):
        raise MessageError(field, f"expected an unsigned integer, got {value!r}", topic)
    try:
        out = operator.index(value)
    except TypeError:
        raise MessageError(field, f"expected an unsigned integer, got {value!r}", topic) from None
    if out < 0:
        raise MessageError(field, f"expected an unsigned integer, got {out}", topic)
    return out


def _bool(value: Any, field: str, topic: str | None) -> bool:
    if isinstance(value, (bool, np.bool_)) or (isinstance(value, (int, np.integer)) and value in (0, 1)):
        return bool(value)
    raise MessageError(field, f"expected a bool, got {type(value).__name__} {value!r:.40}", topic)


def _float(value: Any, field: str, topic: str | None) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise MessageError(field, f"expected a number, got {value!r}", topic) from None
    if not math.isfinite(out):
        raise MessageError(field, f"must be finite, got {out}", topic)
    return out


def _str(value: Any, field: str, topic: str | None) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise MessageError(field, f"not UTF-8 text: {value!r}", topic) from None
    if not isinstance(value, str):
        raise MessageError(field, f"expected a string, got {type(value).__name__}", topic)
    return value


def _byte_buffer(data: Any, field: str, topic: str | None) -> np.ndarray:
    """Return a read-only 1-D uint8 view of ``data`` (numpy, array.array, bytes, list of ints)."""
    if isinstance(data, np.ndarray):
        flat = np.ascontiguousarray(data).reshape(-1)
        if flat.dtype == np.uint8:
            return flat
        if flat.dtype.itemsize == 1 and flat.dtype.kind in "iub":
            return flat.view(np.uint8)
        raise MessageError(field, f"expected uint8 bytes, got a {flat.dtype} array", topic)
    if isinstance(data, (bytes, bytearray, memoryview, array.array)):
        try:
            return np.frombuffer(data, dtype=np.uint8)
        except (TypeError, ValueError) as e:
            raise MessageError(field, f"unreadable byte buffer: {e}", topic) from None
    if isinstance(data, (list, tuple)):
        try:
            values = np.asarray(data, dtype=np.int64).reshape(-1)
        except (TypeError, ValueError, OverflowError):
            raise MessageError(field, "expected a sequence of byte values 0..255", topic) from None
        if values.size and (values.min() < 0 or values.max() > 255):
            raise MessageError(field, "expected byte values 0..255", topic)
        return values.astype(np.uint8)
    raise MessageError(field, f"expected a byte sequence, got {type(data).__name__}", topic)


def _sequence(value: Any, field: str, topic: str | None) -> list:
    if isinstance(value, (str, bytes)):
        raise MessageError(field, f"expected a sequence of messages, got {type(value).__name__}", topic)
    try:
        return list(value)
    except TypeError:
        raise MessageError(field, f"expected a sequence of messages, got {type(value).__name__}", topic) from None


def _float_array(value: Any, field: str, topic: str | None) -> np.ndarray:
    try:
        if isinstance(value, array.array):
            return np.asarray(value.tolist(), dtype=np.float64)
        return np.asarray(value, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        raise MessageError(field, "expected a sequence of numbers", topic) from None


def header_frame_id(msg: Any, field: str, topic: str | None = None) -> str:
    """``msg.header.frame_id`` without a leading ``/`` (tf2 style); ``""`` when empty.

    Raises:
        MessageError: no header, or a frame id that is not text (``field`` names it).
    """
    header = _get(msg, "header", field.rsplit(".", 2)[0], topic, "message with a std_msgs/Header")
    frame = _str(_get(header, "frame_id", field.rsplit(".", 1)[0], topic, "std_msgs/msg/Header"), field, topic)
    return frame.lstrip("/")


# ------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------
def image_to_rgb(msg: Any, topic: str | None = None) -> np.ndarray:
    """``sensor_msgs/msg/Image`` -> (H, W, 3) uint8 RGB (a fresh, writable array).

    Encodings: rgb8, bgr8, rgba8, bgra8 (alpha dropped), mono8 (replicated to RGB). Rows may be
    padded (``step >= width * channels``); ``is_bigendian`` does not matter for 8-bit data.

    Raises:
        MessageError: another encoding (16-bit, float, Bayer, ...), ``len(data) != step * height``,
            ``step < width * channels``, zero size, more than ``constants.MAX_IMAGE_PIXELS``, or missing
            fields.
    """
    where = "image"
    encoding = _str(_get(msg, "encoding", where, topic, "sensor_msgs/msg/Image"), "image.encoding", topic)
    key = encoding.strip().lower()
    if key not in IMAGE_ENCODINGS:
        raise MessageError("image.encoding", f"{encoding!r} is not supported (use {_ENCODINGS_TEXT})", topic)
    channels, rgb = IMAGE_ENCODINGS[key]
    height = _uint(_get(msg, "height", where, topic, "sensor_msgs/msg/Image"), "image.height", topic)
    width = _uint(_get(msg, "width", where, topic, "sensor_msgs/msg/Image"), "image.width", topic)
    step = _uint(_get(msg, "step", where, topic, "sensor_msgs/msg/Image"), "image.step", topic)
    data = _byte_buffer(_get(msg, "data", where, topic, "sensor_msgs/msg/Image"), "image.data", topic)
    if height == 0 or width == 0:
        raise MessageError("image.width" if width == 0 else "image.height",
                           f"empty image ({width}x{height}); publish a non-empty image", topic)
    _check_pixels(width, height, "image.width", topic)
    if step < width * channels:
        raise MessageError("image.step", f"{step} is less than width * channels = {width} * {channels} "
                           f"for {key}", topic)
    if data.size != step * height:
        raise MessageError("image.data", f"holds {data.size} bytes, expected step * height = {step} * {height} "
                           f"= {step * height}", topic)
    pixels = data.reshape(height, step)[:, :width * channels].reshape(height, width, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, list(rgb)])


def _check_pixels(width: int, height: int, field: str, topic: str | None) -> None:
    """Refuse an image larger than ``constants.MAX_IMAGE_PIXELS`` (before anything is allocated)."""
    if width * height > C.MAX_IMAGE_PIXELS:
        raise MessageError(field, f"{width}x{height} = {width * height} pixels exceeds the limit of "
                           f"{C.MAX_IMAGE_PIXELS} (constants.MAX_IMAGE_PIXELS, 8K video fits); publish a smaller "
                           "image", topic)


def compressed_image_to_rgb(msg: Any, topic: str | None = None) -> np.ndarray:
    """``sensor_msgs/msg/CompressedImage`` (JPEG or PNG) -> (H, W, 3) uint8 RGB.

    ``format`` may be ``"jpeg"``, ``"png"`` or image_transport's ``"rgb8; jpeg compressed bgr8"``;
    empty means "detect from the data". The compressed stream itself holds correctly ordered
    colours whatever the encoding names, so it is decoded as is (Pillow).

    Raises:
        MessageError: compressedDepth or another codec, 16-bit / float images, undecodable data, an
            image whose header claims more than ``constants.MAX_IMAGE_PIXELS`` (checked before decoding).
    """
    import warnings

    from PIL import Image, UnidentifiedImageError

    fmt = _str(_get(msg, "format", "compressed_image", topic, "sensor_msgs/msg/CompressedImage"),
               "compressed_image.format", topic)
    data = _byte_buffer(_get(msg, "data", "compressed_image", topic, "sensor_msgs/msg/CompressedImage"),
                        "compressed_image.data", topic)
    low = fmt.lower()
    if "compresseddepth" in low:
        raise MessageError("compressed_image.format", f"{fmt!r} is a depth image; subscribe to a colour image "
                           "(jpeg or png)", topic)
    if low.strip() and not any(codec in low for codec in ("jpeg", "jpg", "png")):
        raise MessageError("compressed_image.format", f"{fmt!r} is not supported (use jpeg or png)", topic)
    if data.size == 0:
        raise MessageError("compressed_image.data", "is empty", topic)
    try:
        with warnings.catch_warnings():  # the size is checked below, against a lower limit than Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data.tobytes()))
        with image:
            if image.format not in ("JPEG", "PNG"):
                raise MessageError("compressed_image.data", f"holds a {image.format} image (use jpeg or png)", topic)
            if image.mode.startswith(("I", "F")):
                raise MessageError("compressed_image.data", f"holds a {image.mode} image (16-bit or float); "
                                   "only 8-bit colour or mono images are supported", topic)
            _check_pixels(*image.size, "compressed_image.data", topic)  # the header's size, not yet decoded
            image.load()
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except MessageError:
        raise
    except Image.DecompressionBombError as e:  # a header claiming more than twice Pillow's own limit
        raise MessageError("compressed_image.data", f"{e} (the limit here is {C.MAX_IMAGE_PIXELS} pixels, "
                           "constants.MAX_IMAGE_PIXELS); publish a smaller image", topic) from None
    except Exception as e:  # noqa: BLE001 -- Pillow's decoders raise OSError, EOFError, struct.error, ...
        kind = "not an image" if isinstance(e, UnidentifiedImageError) else type(e).__name__
        raise MessageError("compressed_image.data", f"cannot decode ({fmt or 'no format'}): {kind}: {e}",
                           topic) from None


# ------------------------------------------------------------------------------------------------
# point clouds
# ------------------------------------------------------------------------------------------------
def pointcloud2_to_xyz(msg: Any, topic: str | None = None,
                       return_dropped: bool = False) -> np.ndarray | tuple[np.ndarray, int]:
    """``sensor_msgs/msg/PointCloud2`` -> (N, 3) float64 x, y, z (frame ``header.frame_id``, m).

    Any field order and offsets, ``point_step`` with padding, ``row_step`` with padding between
    rows, organised clouds (``height > 1``), either endianness; x, y, z each FLOAT32 or FLOAT64.
    Rows holding NaN or inf are dropped. One structured-dtype view, no per-point Python loop.

    Args:
        msg: the cloud.
        topic: named in errors.
        return_dropped: also return how many rows were dropped as non-finite.

    Returns:
        ``xyz`` (N, 3), or ``(xyz, dropped)`` with ``return_dropped``.

    Raises:
        MessageError: x, y or z missing, duplicated or not a float type; ``point_step`` too small for
            the fields; ``row_step < width * point_step``; ``len(data) != row_step * height``.
    """
    where, kind = "point_cloud", "sensor_msgs/msg/PointCloud2"
    height = _uint(_get(msg, "height", where, topic, kind), f"{where}.height", topic)
    width = _uint(_get(msg, "width", where, topic, kind), f"{where}.width", topic)
    point_step = _uint(_get(msg, "point_step", where, topic, kind), f"{where}.point_step", topic)
    row_step = _uint(_get(msg, "row_step", where, topic, kind), f"{where}.row_step", topic)
    big_endian = _bool(_get(msg, "is_bigendian", where, topic, kind), f"{where}.is_bigendian", topic)
    fields = _get(msg, "fields", where, topic, kind)
    data = _byte_buffer(_get(msg, "data", where, topic, kind), f"{where}.data", topic)

    found: dict[str, tuple[int, int]] = {}
    field_list = _sequence(fields, f"{where}.fields", topic)
    names = []
    for i, f in enumerate(field_list):
        fw = f"{where}.fields[{i}]"
        name = _str(_get(f, "name", fw, topic, "sensor_msgs/msg/PointField"), f"{fw}.name", topic)
        names.append(name)
        if name not in ("x", "y", "z"):
            continue
        if name in found:
            raise MessageError(f"{where}.fields", f"field {name!r} appears twice; publish each field once", topic)
        offset = _uint(_get(f, "offset", fw, topic, "sensor_msgs/msg/PointField"), f"{fw}.offset", topic)
        datatype = _uint(_get(f, "datatype", fw, topic, "sensor_msgs/msg/PointField"), f"{fw}.datatype", topic)
        if datatype not in _XYZ_FORMATS:
            label = _POINTFIELD_NAMES.get(datatype, "unknown")
            raise MessageError(f"{fw}.datatype", f"{name} has datatype {datatype} ({label}); x, y and z must be "
                               "FLOAT32 (7) or FLOAT64 (8)", topic)
        found[name] = (offset, datatype)
    missing = [c for c in ("x", "y", "z") if c not in found]
    if missing:
        raise MessageError(f"{where}.fields", f"no {', '.join(missing)} field (fields present: {names}); "
                           "publish a cloud with float x, y, z", topic)
    for c, (offset, datatype) in found.items():
        size = int(_XYZ_FORMATS[datatype][1])
        if offset + size > point_step:
            raise MessageError(f"{where}.point_step", f"{point_step} is too small for field {c!r} at offset "
                               f"{offset} ({size} bytes)", topic)
    if row_step < width * point_step:
        raise MessageError(f"{where}.row_step", f"{row_step} is less than width * point_step = {width} * "
                           f"{point_step}", topic)
    if data.size != row_step * height:
        raise MessageError(f"{where}.data", f"holds {data.size} bytes, expected row_step * height = {row_step} * "
                           f"{height} = {row_step * height}", topic)
    if width * height == 0:
        empty = np.zeros((0, 3), dtype=np.float64)
        return (empty, 0) if return_dropped else empty

    order = ">" if big_endian else "<"
    dtype = np.dtype({
        "names": ["x", "y", "z"],
        "formats": [order + _XYZ_FORMATS[found[c][1]] for c in ("x", "y", "z")],
        "offsets": [found[c][0] for c in ("x", "y", "z")],
        "itemsize": point_step,
    })
    grid = np.ndarray(shape=(height, width), dtype=dtype, buffer=data, strides=(row_step, point_step))
    xyz = np.empty((height * width, 3), dtype=np.float64)
    for j, c in enumerate(("x", "y", "z")):
        xyz[:, j] = grid[c].reshape(-1)
    finite = np.isfinite(xyz).all(axis=1)
    dropped = int(finite.size - np.count_nonzero(finite))
    if dropped:
        xyz = xyz[finite]
    return (xyz, dropped) if return_dropped else xyz


def xyz_to_pointcloud2(factory: MessageFactory, header: Any, points: np.ndarray,
                       labels: np.ndarray | None = None, rgb: np.ndarray | None = None) -> Any:
    """(N, 3) points -> unorganised little-endian ``sensor_msgs/msg/PointCloud2`` (PCL style).

    Fields, packed in this order: ``x, y, z`` FLOAT32 (offsets 0, 4, 8); ``label`` UINT32 when
    ``labels`` is given (PointXYZL); ``rgb`` FLOAT32 holding the bits of ``0x00RRGGBB`` when ``rgb``
    is given (PointXYZRGBL). With both: offsets 0, 4, 8, 12, 16 and ``point_step`` 20.

    Args:
        factory: message backend.
        header: ``std_msgs/msg/Header`` of the cloud (frame of ``points``).
        points: (N, 3) metres.
        labels: (N,) non-negative integers (< 2**32), or None.
        rgb: (N, 3) colours 0..255, or None.

    Raises:
        InputError: wrong shapes or out-of-range labels / colours.
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise InputError(f"points: expected an (N, 3) array, got shape {points.shape}")
    n = points.shape[0]
    names, formats = ["x", "y", "z"], ["<f4", "<f4", "<f4"]
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.shape[0] != n or labels.dtype.kind not in "iub":
            raise InputError(f"labels: expected ({n},) integers, got {labels.dtype} shape {labels.shape}")
        if n and (labels.min() < 0 or labels.max() >= 2**32):
            raise InputError("labels: must lie in [0, 2**32)")
        names.append("label")
        formats.append("<u4")
    if rgb is not None:
        rgb = np.asarray(rgb)
        if rgb.shape != (n, 3) or rgb.dtype.kind not in "iu":
            raise InputError(f"rgb: expected ({n}, 3) integers 0..255, got {rgb.dtype} shape {rgb.shape}")
        if n and (rgb.min() < 0 or rgb.max() > 255):
            raise InputError("rgb: colours must lie in 0..255")
        names.append("rgb")
        formats.append("<f4")
    offsets = [4 * i for i in range(len(names))]
    record = np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": 4 * len(names)})
    cloud = np.zeros(n, dtype=record)
    for j, c in enumerate(("x", "y", "z")):
        cloud[c] = points[:, j]
    if labels is not None:
        cloud["label"] = labels.astype(np.uint32)
    if rgb is not None:
        rgb32 = rgb.astype(np.uint32)
        packed = (rgb32[:, 0] << 16) | (rgb32[:, 1] << 8) | rgb32[:, 2]
        cloud["rgb"] = packed.astype("<u4").view("<f4")
    datatypes = {"label": _UINT32}
    fields = [factory.make("sensor_msgs/msg/PointField", name=name, offset=off,
                           datatype=datatypes.get(name, _FLOAT32), count=1)
              for name, off in zip(names, offsets)]
    return factory.make(
        "sensor_msgs/msg/PointCloud2",
        header=header,
        height=1,
        width=n,
        fields=fields,
        is_bigendian=False,
        point_step=record.itemsize,
        row_step=record.itemsize * n,
        data=factory.array(cloud.view(np.uint8).reshape(-1)),
        is_dense=bool(np.isfinite(points).all()),
    )


def contacts_to_pointcloud2(factory: MessageFactory, header: Any, persons: Sequence[Any]) -> Any:
    """Every person's contact points as one labelled, coloured cloud (see :func:`xyz_to_pointcloud2`).

    ``label`` is the SMPL body-part id (1..7, ``constants.CONTACT_PART_NAMES``) and ``rgb`` its colour
    (``constants.CONTACT_PART_COLORS``; grey for unknown ids). Non-finite points are left out.

    Args:
        persons: :class:`sahmr_ros.pipeline.PersonResult` (``contact_points_map`` (k, 3),
            ``contact_labels`` (k,)).
        header: frame of the contact points (the map frame).
    """
    clouds = [np.asarray(p.contact_points_map, dtype=np.float64).reshape(-1, 3) for p in persons]
    labels = [np.asarray(p.contact_labels, dtype=np.int64).reshape(-1) for p in persons]
    for i, (pts, lab) in enumerate(zip(clouds, labels)):
        if pts.shape[0] != lab.shape[0]:
            raise InputError(f"persons[{i}]: {pts.shape[0]} contact points but {lab.shape[0]} contact labels")
    xyz = np.concatenate(clouds) if clouds else np.zeros((0, 3))
    lab = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    keep = np.isfinite(xyz).all(axis=1) & (lab >= 0)
    xyz, lab = xyz[keep], lab[keep]
    palette = np.asarray(C.CONTACT_PART_COLORS, dtype=np.uint8)
    colours = palette[np.where(lab < len(palette), lab, 0)]
    return xyz_to_pointcloud2(factory, header, xyz, labels=lab, rgb=colours)


# ------------------------------------------------------------------------------------------------
# camera info, detections, transforms
# ------------------------------------------------------------------------------------------------
class CameraIntrinsics(NamedTuple):
    """Pinhole intrinsics from a CameraInfo (camera optical frame).

    Attributes:
        K: (3, 3) float64 in pixels.
        distortion_model: ``plumb_bob``, ``rational_polynomial``, ... (may be empty).
        D: (n,) float64 distortion coefficients (OpenCV order; may be empty).
        width, height: the calibrated image size in pixels (0 = not given).
        P: (3, 4) float64 projection of the rectified image, or None when absent or unusable
            (not 12 finite numbers with positive focal lengths).
    """

    K: np.ndarray
    distortion_model: str
    D: np.ndarray
    width: int = 0
    height: int = 0
    P: np.ndarray | None = None


def camera_info_to_intrinsics(msg: Any, topic: str | None = None) -> CameraIntrinsics:
    """``sensor_msgs/msg/CameraInfo`` -> :class:`CameraIntrinsics` ``(K, distortion_model, D, width, height, P)``.

    Reads ``k`` / ``d`` / ``p`` (ROS 2) or ``K`` / ``D`` / ``P`` (ROS 1 style duck types).

    Raises:
        MessageError: ``k`` not 9 numbers, non-finite entries, ``fx`` / ``fy`` not > 0, ``cx`` / ``cy``
            zero (an uncalibrated camera publishes all zeros: calibrate it), non-finite ``d``, a
            ``width`` / ``height`` that is not an unsigned integer.
    """
    where = "camera_info"
    if hasattr(msg, "k"):
        k_name, k_value = "k", msg.k
    elif hasattr(msg, "K"):
        k_name, k_value = "K", msg.K
    else:
        raise MessageError(f"{where}.k", "missing (expected a sensor_msgs/msg/CameraInfo message)", topic)
    K = _float_array(k_value, f"{where}.{k_name}", topic)
    if K.shape != (9,):
        raise MessageError(f"{where}.{k_name}", f"expected 9 numbers (row-major 3x3), got {K.size}", topic)
    if not np.isfinite(K).all():
        raise MessageError(f"{where}.{k_name}", f"contains NaN or inf: {K.tolist()}", topic)
    fx, cx, fy, cy = K[0], K[2], K[4], K[5]
    if fx <= 0 or fy <= 0 or cx == 0 or cy == 0:
        raise MessageError(f"{where}.{k_name}", f"not a calibrated camera (fx={fx}, fy={fy}, cx={cx}, cy={cy}); "
                           "fx and fy must be > 0 and cx, cy non-zero: publish a calibrated camera_info", topic)
    d_name = "d" if hasattr(msg, "d") else "D"
    D = _float_array(getattr(msg, d_name, ()), f"{where}.{d_name}", topic)
    if not np.isfinite(D).all():
        raise MessageError(f"{where}.{d_name}", f"contains NaN or inf: {D.tolist()}", topic)
    model = _str(getattr(msg, "distortion_model", ""), f"{where}.distortion_model", topic)
    width = _uint(getattr(msg, "width", 0), f"{where}.width", topic)
    height = _uint(getattr(msg, "height", 0), f"{where}.height", topic)
    p_name = "p" if hasattr(msg, "p") else "P"
    try:
        P = _float_array(getattr(msg, p_name, ()), f"{where}.{p_name}", topic)
    except MessageError:
        P = None
    if P is None or P.size != 12 or not np.isfinite(P).all() or P[0] <= 0 or P[5] <= 0:
        P = None
    return CameraIntrinsics(K.reshape(3, 3), model, D, width, height, None if P is None else P.reshape(3, 4))


@dataclass(frozen=True, eq=False)
class Detections:
    """Person boxes read from a ``vision_msgs/msg/Detection2DArray`` (image pixels).

    Attributes:
        boxes: (N, 4) float64 ``x1, y1, x2, y2`` (axis-aligned; a rotated box is replaced by its
            axis-aligned bounding box).
        scores: (N,) float64.
        ids: detection / tracking ids (``""`` when absent).
        class_ids: class of the chosen hypothesis (``""`` for a detection without hypotheses).
        indices: (N,) int64 index of each kept detection in ``msg.detections``.
        skipped: ``(index in msg.detections, reason)`` of each malformed detection that was left
            out (NaN coordinates, negative size, missing fields); the others are kept.
    """

    boxes: np.ndarray
    scores: np.ndarray
    ids: list[str]
    class_ids: list[str]
    indices: np.ndarray
    skipped: list[tuple[int, str]] = dataclasses.field(default_factory=list)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


def _hypotheses(det: Any, where: str, topic: str | None) -> list[tuple[str, float]]:
    results = getattr(det, "results", None)
    if results is None:
        return []
    out = []
    for j, r in enumerate(_sequence(results, f"{where}.results", topic)):
        rw = f"{where}.results[{j}]"
        hyp = getattr(r, "hypothesis", r)  # 3.x / 4.x nest (class_id, score); 2.x has (id, score) inline
        if hasattr(hyp, "class_id"):
            cid = hyp.class_id
        elif hasattr(hyp, "id"):
            cid = hyp.id
        else:
            raise MessageError(f"{rw}.hypothesis.class_id", "missing (expected vision_msgs ObjectHypothesisWithPose)",
                               topic)
        score = _float(_get(hyp, "score", f"{rw}.hypothesis", topic, "vision_msgs/msg/ObjectHypothesis"),
                       f"{rw}.hypothesis.score", topic)
        out.append((cid if isinstance(cid, str) else str(cid), score))
    return out


def detections_to_boxes(msg: Any, class_ids: Sequence[str] = (), min_score: float = 0.0,
                        topic: str | None = None) -> Detections:
    """``vision_msgs/msg/Detection2DArray`` -> :class:`Detections`, filtered by class and score.

    Reads vision_msgs 4.x (Humble / Jazzy: ``bbox.center.position.x``) and 3.x / 2.x (Foxy,
    Galactic: ``bbox.center.x``; 2.x ``results[i].id`` and ``tracking_id``).

    Score and class of a detection: its best-scoring hypothesis among those whose ``class_id`` is in
    ``class_ids`` (all hypotheses when ``class_ids`` is empty); a detection without such a hypothesis
    is dropped. A detection with **no hypotheses at all** (a single-class detector that leaves
    ``results`` empty) counts as class ``""`` with score 1.0 and passes any class filter.
    Detections scoring below ``min_score`` are dropped.

    One malformed detection (a NaN coordinate or score, a negative size, a missing field) costs only
    itself: it is listed in :attr:`Detections.skipped` with the field and the problem, and the
    others are kept.

    Args:
        msg: the array.
        class_ids: classes to keep (compared as strings: ``("person",)`` or ``("0",)``); empty: all.
        min_score: minimum score.
        topic: named in errors.

    Raises:
        MessageError: the message has no readable ``detections`` sequence.
    """
    if isinstance(class_ids, (str, bytes)):  # one class given bare: ("person") is not a tuple
        class_ids = (class_ids,)
    wanted = {c.decode() if isinstance(c, bytes) else str(c) for c in class_ids}
    detections = _sequence(_get(msg, "detections", "detections", topic, "vision_msgs/msg/Detection2DArray"),
                           "detections.detections", topic)
    kept, skipped = [], []
    for i, det in enumerate(detections):
        try:
            read = _detection(det, i, wanted, min_score, topic)
        except MessageError as exc:
            skipped.append((i, f"{exc.field}: {exc.detail}"))
            continue
        if read is not None:
            kept.append((*read, i))
    boxes, scores, ids, classes, indices = zip(*kept) if kept else ((),) * 5
    return Detections(
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        scores=np.asarray(scores, dtype=np.float64),
        ids=list(ids),
        class_ids=list(classes),
        indices=np.asarray(indices, dtype=np.int64),
        skipped=skipped,
    )


def _detection(det: Any, i: int, wanted: set[str], min_score: float,
               topic: str | None) -> tuple[tuple[float, float, float, float], float, str, str] | None:
    """``(box xyxy, score, id, class)`` of ``detections[i]``, or None when filtered out by class or score.

    Raises:
        MessageError: a missing or malformed field of this detection.
    """
    where = f"detections[{i}]"
    hyps = _hypotheses(det, where, topic)
    if hyps:
        candidates = [h for h in hyps if not wanted or h[0] in wanted]
        if not candidates:
            return None
        cid, score = max(candidates, key=lambda h: h[1])  # first of equal maxima
    else:
        cid, score = "", 1.0
    if score < min_score:
        return None
    bbox = _get(det, "bbox", where, topic, "vision_msgs/msg/Detection2D")
    center = _get(bbox, "center", f"{where}.bbox", topic, "vision_msgs/msg/BoundingBox2D")
    if hasattr(center, "position"):  # vision_msgs 4.x: vision_msgs/Pose2D
        pos, pos_name = center.position, f"{where}.bbox.center.position"
    else:  # 3.x / 2.x: geometry_msgs/Pose2D
        pos, pos_name = center, f"{where}.bbox.center"
    cx = _float(_get(pos, "x", pos_name, topic, "Pose2D"), f"{pos_name}.x", topic)
    cy = _float(_get(pos, "y", pos_name, topic, "Pose2D"), f"{pos_name}.y", topic)
    theta = _float(getattr(center, "theta", 0.0), f"{where}.bbox.center.theta", topic)
    sx = _float(_get(bbox, "size_x", f"{where}.bbox", topic, "BoundingBox2D"), f"{where}.bbox.size_x", topic)
    sy = _float(_get(bbox, "size_y", f"{where}.bbox", topic, "BoundingBox2D"), f"{where}.bbox.size_y", topic)
    if sx < 0 or sy < 0:
        raise MessageError(f"{where}.bbox.size_x" if sx < 0 else f"{where}.bbox.size_y",
                           f"box sizes must be >= 0, got {sx} x {sy}", topic)
    c, s = abs(math.cos(theta)), abs(math.sin(theta))
    half_w, half_h = 0.5 * (c * sx + s * sy), 0.5 * (s * sx + c * sy)
    det_id = getattr(det, "id", None)
    if det_id is None:
        det_id = getattr(det, "tracking_id", "")
    det_id = det_id if isinstance(det_id, str) else str(det_id)
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h), score, det_id, cid


def transform_to_matrix(transform: Any, topic: str | None = None) -> np.ndarray:
    """``geometry_msgs/msg/Transform`` (or TransformStamped, or Pose) -> (4, 4) float64.

    The result maps points of the child frame into the parent frame (``T_parent_child``). The
    quaternion (x, y, z, w) must be unit length within tf2's tolerance (``| |q|^2 - 1 | <= 0.01``);
    it is normalised before use.

    Raises:
        MessageError: missing fields, non-finite values, or a quaternion far from unit length.
    """
    where = "transform"
    if hasattr(transform, "transform"):
        transform, where = transform.transform, "transform.transform"
    if hasattr(transform, "translation"):
        t_name, r_name = "translation", "rotation"
    elif hasattr(transform, "position"):
        t_name, r_name = "position", "orientation"
    else:
        raise MessageError(f"{where}.translation", "missing (expected a geometry_msgs/msg/Transform)", topic)
    t, q = getattr(transform, t_name), _get(transform, r_name, where, topic, "geometry_msgs/msg/Transform")
    xyz = [_float(_get(t, a, f"{where}.{t_name}", topic, "Vector3"), f"{where}.{t_name}.{a}", topic) for a in "xyz"]
    quat = np.array([_float(_get(q, a, f"{where}.{r_name}", topic, "Quaternion"), f"{where}.{r_name}.{a}", topic)
                     for a in "xyzw"])
    norm2 = float(quat @ quat)
    if abs(norm2 - 1.0) > 0.01:
        raise MessageError(f"{where}.{r_name}", f"quaternion {quat.tolist()} is not unit length (|q|^2 = {norm2:.4g}); "
                           "publish a normalised rotation", topic)
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(quat).as_matrix()
    T[:3, 3] = xyz
    return T


# ------------------------------------------------------------------------------------------------
# inputs, written (the inverses of the readers above)
# ------------------------------------------------------------------------------------------------
def rgb_to_image(factory: MessageFactory, header: Any, rgb: np.ndarray) -> Any:
    """(H, W, 3) uint8 RGB -> ``sensor_msgs/msg/Image`` (rgb8, no row padding)."""
    rgb = np.ascontiguousarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"rgb: expected an (H, W, 3) uint8 array, got {rgb.dtype} shape {rgb.shape}")
    height, width = rgb.shape[:2]
    return factory.make("sensor_msgs/msg/Image", header=header, height=height, width=width, encoding="rgb8",
                        step=3 * width, data=factory.array(rgb.reshape(-1)))


def intrinsics_to_camera_info(factory: MessageFactory, header: Any, K: np.ndarray, width: int, height: int,
                              D: Sequence[float] = (0.0,) * 5, distortion_model: str = "plumb_bob",
                              P: np.ndarray | None = None) -> Any:
    """Pinhole ``K`` (3, 3) -> ``sensor_msgs/msg/CameraInfo`` (``r`` identity, ``p`` = [K | 0] unless given)."""
    K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    P = np.hstack([K, np.zeros((3, 1))]) if P is None else np.asarray(P, dtype=np.float64).reshape(3, 4)
    return factory.make("sensor_msgs/msg/CameraInfo", header=header, height=int(height), width=int(width),
                        distortion_model=distortion_model, d=np.asarray(D, dtype=np.float64), k=K.reshape(-1),
                        r=np.eye(3).reshape(-1), p=P.reshape(-1))


def boxes_to_detections(factory: MessageFactory, header: Any, boxes: np.ndarray, ids: Sequence[str] | None = None,
                        class_ids: Sequence[str] | str = "person", scores: Sequence[float] | float = 1.0) -> Any:
    """(N, 4) ``x1, y1, x2, y2`` pixel boxes -> ``vision_msgs/msg/Detection2DArray`` (4.x layout).

    Args:
        ids: detection / tracking id per box (default ``"1"``, ``"2"``, ...).
        class_ids, scores: one hypothesis per box; a single value applies to every box.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n = len(boxes)
    ids = [str(i + 1) for i in range(n)] if ids is None else list(ids)
    class_ids = [class_ids] * n if isinstance(class_ids, str) else list(class_ids)
    scores = [float(scores)] * n if np.isscalar(scores) else [float(s) for s in scores]
    detections = []
    for (x1, y1, x2, y2), det_id, cls, score in zip(boxes, ids, class_ids, scores):
        hypothesis = factory.make("vision_msgs/msg/ObjectHypothesis", class_id=cls, score=score)
        center = factory.make("vision_msgs/msg/Pose2D", position=factory.make(
            "vision_msgs/msg/Point2D", x=(x1 + x2) / 2, y=(y1 + y2) / 2))
        detections.append(factory.make(
            "vision_msgs/msg/Detection2D", header=header, id=det_id,
            results=[factory.make("vision_msgs/msg/ObjectHypothesisWithPose", hypothesis=hypothesis)],
            bbox=factory.make("vision_msgs/msg/BoundingBox2D", center=center, size_x=x2 - x1, size_y=y2 - y1)))
    return factory.make("vision_msgs/msg/Detection2DArray", header=header, detections=detections)


def matrix_to_transform(factory: MessageFactory, header: Any, child_frame_id: str, T: np.ndarray) -> Any:
    """(4, 4) ``T_parent_child`` -> ``geometry_msgs/msg/TransformStamped`` (parent = ``header.frame_id``)."""
    T = np.asarray(T, dtype=np.float64)
    x, y, z = T[:3, 3]
    qx, qy, qz, qw = Rotation.from_matrix(T[:3, :3]).as_quat()
    return factory.make(
        "geometry_msgs/msg/TransformStamped", header=header, child_frame_id=child_frame_id,
        transform=factory.make("geometry_msgs/msg/Transform",
                               translation=factory.make("geometry_msgs/msg/Vector3", x=x, y=y, z=z),
                               rotation=factory.make("geometry_msgs/msg/Quaternion", x=qx, y=qy, z=qz, w=qw)))


# ------------------------------------------------------------------------------------------------
# outputs
# ------------------------------------------------------------------------------------------------
def marker_id(detection_id: str, index: int) -> int:
    """Stable int32 marker id of a person.

    A decimal detection id in [0, 2**31) is used as is; another non-empty id maps to
    ``zlib.crc32(id) & 0x7fffffff`` (stable across runs and processes); an empty id maps to
    ``-(index + 1)``, which never collides with the two others.
    """
    from sahmr_ros.tracking.tracker import id_to_marker  # the one rule, shared with the tracker's tracks

    text = (detection_id or "").strip()
    if not text:
        return -(int(index) + 1)
    return id_to_marker(text)


def _person_ids(persons: Sequence[Any], ids: Sequence[str] | None, name: str = "ids") -> list[str]:
    if ids is None:
        return [""] * len(persons)
    if len(ids) != len(persons):
        raise InputError(f"{name}: expected one id per person ({len(persons)}), got {len(ids)}")
    return [str(i) for i in ids]


def mesh_markers(factory: MessageFactory, header: Any, persons: Sequence[Any], faces: np.ndarray,
                 lifetime_s: float = 0.0, ns: str = "sahmr_meshes", ids: Sequence[str] | None = None,
                 alpha: float = 1.0, marker_ids: Sequence[int | None] | None = None) -> Any:
    """``visualization_msgs/msg/MarkerArray``: DELETEALL, then one TRIANGLE_LIST per person.

    The first marker (action DELETEALL, 3) clears the meshes of the previous frame, so a frame
    without persons clears the display. Each person's marker: type TRIANGLE_LIST (11), action ADD,
    namespace ``ns``, id ``marker_ids[i]`` (the track's, stable over frames) or else :func:`marker_id`
    of its detection id, identity pose, scale 1, a colour from :data:`MESH_PALETTE` picked by id (so a
    track keeps its colour), ``lifetime_s`` (0: forever), and
    ``points = vertices[faces]`` (3 points per triangle: 41,328 for SMPL). Persons whose vertices
    are not finite (flag ``non_finite_output``) are left out.

    Args:
        factory: message backend.
        header: header of every marker (stamp of the image; frame_id = the map frame).
        persons: :class:`sahmr_ros.pipeline.PersonResult` (``vertices_map`` (V, 3), map frame).
        faces: (F, 3) vertex indices (SMPL: (13776, 3)).
        lifetime_s: marker lifetime in seconds.
        ns: marker namespace.
        ids: detection id per person (e.g. ``[dets.ids[p.box_index] for p in persons]``), or None.
        alpha: opacity of the meshes.
        marker_ids: int32 marker id per person (None entries: from ``ids``), e.g. the tracks'
            :attr:`~sahmr_ros.tracking.TrackedPerson.marker_id`; None: all from ``ids``.

    Raises:
        InputError: faces not (F, 3) integers, indexing outside a person's vertices, or ``ids`` /
            ``marker_ids`` not one per person.
    """
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or faces.dtype.kind not in "iu":
        raise InputError(f"faces: expected (F, 3) integer vertex indices, got {faces.dtype} shape {faces.shape}")
    person_ids = _person_ids(persons, ids)
    if marker_ids is None:
        marker_ids = [None] * len(persons)
    elif len(marker_ids) != len(persons):
        raise InputError(f"marker_ids: expected one per person ({len(persons)}), got {len(marker_ids)}")
    markers = [factory.make("visualization_msgs/msg/Marker", header=header, ns=ns, id=0,
                            action=_MARKER_DELETEALL)]
    used: set[int] = set()
    for i, (person, det_id, given) in enumerate(zip(persons, person_ids, marker_ids)):
        vertices = np.asarray(person.vertices_map, dtype=np.float64).reshape(-1, 3)
        if C.FLAG_NON_FINITE in tuple(getattr(person, "flags", ())) or not np.isfinite(vertices).all():
            continue
        if faces.size and (faces.min() < 0 or faces.max() >= vertices.shape[0]):
            raise InputError(f"faces: indices must lie in [0, {vertices.shape[0]}) for persons[{i}].vertices_map")
        mid = marker_id(det_id, i) if given is None else int(given)
        if mid in used:  # two ids hashing alike: fall back to a free negative id
            mid = -(i + 1)
            while mid in used:
                mid -= 1
        used.add(mid)
        r, g, b = MESH_PALETTE[mid % len(MESH_PALETTE)]
        markers.append(factory.make(
            "visualization_msgs/msg/Marker",
            header=header, ns=ns, id=mid, type=_MARKER_TRIANGLE_LIST, action=_MARKER_ADD,
            pose=factory.make("geometry_msgs/msg/Pose",
                              orientation=factory.make("geometry_msgs/msg/Quaternion", w=1.0)),
            scale=factory.make("geometry_msgs/msg/Vector3", x=1.0, y=1.0, z=1.0),
            color=factory.make("std_msgs/msg/ColorRGBA", r=r, g=g, b=b, a=float(alpha)),
            lifetime=duration_from_seconds(factory, lifetime_s), frame_locked=False,
            points=factory.points(vertices[faces].reshape(-1, 3)),
        ))
    return factory.make("visualization_msgs/msg/MarkerArray", markers=markers)


def human_mesh_array(factory: MessageFactory, header: Any, persons: Sequence[Any],
                     ids: Sequence[str] | None = None, track_ids: Sequence[str] | None = None) -> Any:
    """``sahmr_ros/msg/HumanMeshArray`` of the persons (all of them, flags included).

    Args:
        factory: message backend (its type store / install must know ``sahmr_ros/msg/HumanMesh``).
        header: stamp of the source image; frame_id = the map frame every array is in.
        persons: :class:`sahmr_ros.pipeline.PersonResult`.
        ids: detection id per person, or None (``""``).
        track_ids: track id per person (:attr:`~sahmr_ros.tracking.TrackedPerson.track_id`), or None (``""``).
    """
    person_ids = _person_ids(persons, ids)
    person_tracks = _person_ids(persons, track_ids, "track_ids")
    humans = []
    for i, (p, det_id, track_id) in enumerate(zip(persons, person_ids, person_tracks)):
        labels = np.asarray(p.contact_labels).reshape(-1)
        if labels.size and labels.min() < 0:
            raise InputError(f"persons[{i}].contact_labels: must be >= 0 (SMPL part ids 1..7)")
        root = np.asarray(p.root_map, dtype=np.float64).reshape(3)
        humans.append(factory.make(
            "sahmr_ros/msg/HumanMesh",
            id=det_id,
            track_id=track_id,
            score=float(p.score),
            box=np.asarray(p.box_xyxy, dtype=np.float32).reshape(4),
            root=factory.make("geometry_msgs/msg/Point", x=root[0], y=root[1], z=root[2]),
            joints=np.asarray(p.joints14_map, dtype=np.float32).reshape(-1),
            vertices=np.asarray(p.vertices_map, dtype=np.float32).reshape(-1),
            contact_points=np.asarray(p.contact_points_map, dtype=np.float32).reshape(-1),
            contact_labels=labels.astype(np.uint32),
            flags=[str(f) for f in getattr(p, "flags", ())],
        ))
    return factory.make("sahmr_ros/msg/HumanMeshArray", header=header, humans=humans)


def _format_value(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{float(value):.6g}"
    return str(value)


def diagnostics(factory: MessageFactory, stamp: Any, level: int | str, message: str,
                values: Mapping[str, Any] | None = None, name: str = "sahmr_node: pipeline",
                hardware_id: str = "") -> Any:
    """``diagnostic_msgs/msg/DiagnosticArray`` with one ``DiagnosticStatus``.

    Args:
        factory: message backend.
        stamp: ``builtin_interfaces/msg/Time`` or integer nanoseconds.
        level: 0..3 or ``"OK"``, ``"WARN"``, ``"ERROR"``, ``"STALE"``.
        message: one-line summary.
        values: key -> value pairs (values formatted with ``str``; floats with 6 significant digits).
        name: status name.
        hardware_id: status hardware id.
    """
    if isinstance(level, str):
        if level.upper() not in _DIAGNOSTIC_LEVELS:
            raise InputError(f"level: {level!r} is not a diagnostic level (use {', '.join(_DIAGNOSTIC_LEVELS)})")
        level = _DIAGNOSTIC_LEVELS[level.upper()]
    elif isinstance(level, bytes):
        level = level[0]
    level = int(level)
    if level not in _DIAGNOSTIC_LEVELS.values():
        raise InputError(f"level: {level} is not a diagnostic level (use 0 OK, 1 WARN, 2 ERROR, 3 STALE)")
    if isinstance(stamp, (int, np.integer)):
        stamp = ns_to_time(factory, int(stamp))
    pairs = [factory.make("diagnostic_msgs/msg/KeyValue", key=str(k), value=_format_value(v))
             for k, v in (values or {}).items()]
    status = factory.make("diagnostic_msgs/msg/DiagnosticStatus", level=level, name=name, message=str(message),
                          hardware_id=hardware_id, values=pairs)
    return factory.make("diagnostic_msgs/msg/DiagnosticArray",
                        header=factory.make("std_msgs/msg/Header", stamp=stamp), status=[status])
