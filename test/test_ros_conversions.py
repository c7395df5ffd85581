"""sahmr_ros.ros conversions, message factories and type stores, without ROS.

Inputs are serialised and deserialised with rosbags' CDR codec (the bytes a ROS 2 publisher
sends) before they are read; expected values come from independent computations (hand-built
arrays, per-point ``struct`` decoding, Pillow encoders). Malformed inputs must raise
MessageError, never another exception (hypothesis). RclpyFactory is checked against fake
generated message classes that enforce rosidl_generator_py's setter rules; the real rclpy graph
test lives elsewhere.
"""

from __future__ import annotations

import array
import io
import math
import struct
import sys
import types
import zlib

import numpy as np
from scipy.spatial.transform import Rotation
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError, MessageError
from sahmr_ros.ros import conversions as cv
from sahmr_ros.ros.interfaces import (
    HUMAN_MESH_ARRAY,
    MSG_DIR,
    make_legacy_vision_typestore,
    make_typestore,
)
from sahmr_ros.ros.messages import MessageFactory, RclpyFactory, RosbagsFactory, ns_to_time
from sahmr_ros.ros.sync import stamp_to_ns

HYP = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
REPO = MSG_DIR.resolve().parent


@pytest.fixture(scope="module")
def ts():
    return make_typestore("jazzy")


@pytest.fixture(scope="module")
def fac(ts):
    return RosbagsFactory(ts)


def cdr(ts, msg):
    """Serialise and deserialise, as a subscriber on another process would see the message."""
    return ts.deserialize_cdr(ts.serialize_cdr(msg, msg.__msgtype__), msg.__msgtype__)


def header(fac, frame="map", ns=1_700_000_000_250_000_000):
    return fac.make("std_msgs/msg/Header", stamp=ns_to_time(fac, ns), frame_id=frame)


# ------------------------------------------------------------------------------------------------
# type stores, errors, factories, stamps
# ------------------------------------------------------------------------------------------------
def test_typestores_know_our_messages_and_vision_msgs():
    for distro in ("jazzy", "humble"):
        ts = make_typestore(distro)
        for name in ("sahmr_ros/msg/HumanMesh", HUMAN_MESH_ARRAY, "vision_msgs/msg/Detection2DArray",
                     "vision_msgs/msg/Pose2D", "vision_msgs/msg/Point2D"):
            assert name in ts.types
        fields = dict(ts.fielddefs["vision_msgs/msg/BoundingBox2D"][1])
        assert fields["center"][1] == "vision_msgs/msg/Pose2D"
    legacy = make_legacy_vision_typestore(3)
    assert dict(legacy.fielddefs["vision_msgs/msg/BoundingBox2D"][1])["center"][1] == "geometry_msgs/msg/Pose2D"
    with pytest.raises(InputError, match="distro"):
        make_typestore("rolling-2099")


def test_interface_files_are_the_repository_msg_files():
    for name in ("HumanMesh.msg", "HumanMeshArray.msg"):
        assert (MSG_DIR / name).read_text() == (REPO / "msg" / name).read_text()
    fields = dict(make_typestore().fielddefs["sahmr_ros/msg/HumanMesh"][1])
    assert list(fields) == ["id", "track_id", "score", "box", "root", "joints", "vertices", "contact_points",
                            "contact_labels", "flags"]
    assert fields["box"][1] == ((fields["box"][1][0][0], ("float32", 0)), 4)


def test_message_error_names_topic_and_field():
    e = MessageError("image.encoding", "'mono16' is not supported", topic="/cam/image")
    assert str(e) == "/cam/image: image.encoding: 'mono16' is not supported"
    assert (e.field, e.topic) == ("image.encoding", "/cam/image")
    assert isinstance(e, InputError) and isinstance(e, ValueError)
    assert str(MessageError("a.b", "bad")) == "a.b: bad"
    import pickle

    assert str(pickle.loads(pickle.dumps(e))) == str(e)


@pytest.mark.parametrize("msgtype", [
    "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage", "sensor_msgs/msg/CameraInfo",
    "sensor_msgs/msg/PointCloud2", "vision_msgs/msg/Detection2DArray", "visualization_msgs/msg/MarkerArray",
    "visualization_msgs/msg/Marker", "sahmr_ros/msg/HumanMeshArray", "sahmr_ros/msg/HumanMesh",
    "diagnostic_msgs/msg/DiagnosticArray", "geometry_msgs/msg/TransformStamped",
])
def test_rosbags_factory_defaults_serialise(ts, fac, msgtype):
    msg = fac.make(msgtype)
    raw = ts.serialize_cdr(msg, msgtype)
    assert ts.serialize_cdr(ts.deserialize_cdr(raw, msgtype), msgtype) == raw


def test_rosbags_factory_defaults_and_coercion(ts, fac):
    assert fac.make("geometry_msgs/msg/Quaternion").w == 1.0  # ROS 2 declared default
    info = fac.make("sensor_msgs/msg/CameraInfo", k=list(range(9)), d=[0.1, 0.2])
    assert info.k.dtype == np.float64 and info.k.shape == (9,) and info.d.dtype == np.float64
    assert fac.make("sensor_msgs/msg/Image", data=b"\x01\x02").data.dtype == np.uint8
    mesh = fac.make("sahmr_ros/msg/HumanMesh", score=np.float32(0.5), joints=np.ones((14, 3)))
    assert mesh.joints.dtype == np.float32 and mesh.joints.shape == (42,) and type(mesh.score) is float
    with pytest.raises(TypeError, match="no field"):
        fac.make("std_msgs/msg/Header", frame="x")
    with pytest.raises(ValueError, match="expected 9"):
        fac.make("sensor_msgs/msg/CameraInfo", k=[1.0, 2.0])
    assert isinstance(fac, MessageFactory)


def test_stamps(fac):
    for ns in (0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789, -1, -1_500_000_000):
        t = ns_to_time(fac, ns)
        assert 0 <= t.nanosec < 1_000_000_000
        assert t.sec * 1_000_000_000 + t.nanosec == ns
        if ns >= 0:  # message stamps are never negative (stamp_to_ns refuses them)
            assert stamp_to_ns(t) == ns
    assert stamp_to_ns(header(fac, ns=42).stamp) == 42


# ------------------------------------------------------------------------------------------------
# images
# ------------------------------------------------------------------------------------------------
def _encode_image(rgb: np.ndarray, encoding: str, pad: int) -> tuple[bytes, int]:
    """Hand-built Image data: channel order per encoding, ``pad`` junk bytes after every row."""
    h, w, _ = rgb.shape
    gray = rgb[:, :, 0]
    planes = {
        "rgb8": rgb, "bgr8": rgb[:, :, ::-1],
        "rgba8": np.concatenate([rgb, np.full((h, w, 1), 7, np.uint8)], axis=2),
        "bgra8": np.concatenate([rgb[:, :, ::-1], np.full((h, w, 1), 7, np.uint8)], axis=2),
        "mono8": gray[:, :, None],
    }[encoding]
    rows = [planes[r].tobytes() + bytes([0xAB]) * pad for r in range(h)]
    return b"".join(rows), planes.shape[2] * w + pad


def _expected_rgb(rgb, encoding):
    return np.repeat(rgb[:, :, :1], 3, axis=2) if encoding == "mono8" else rgb


@pytest.mark.parametrize("encoding", sorted(cv.IMAGE_ENCODINGS))
@pytest.mark.parametrize("pad", [0, 3])
def test_image_encodings_round_trip(ts, fac, encoding, pad):
    rgb = np.random.default_rng(1).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    data, step = _encode_image(rgb, encoding, pad)
    msg = fac.make("sensor_msgs/msg/Image", header=header(fac, "cam"), height=5, width=7, encoding=encoding,
                   is_bigendian=1, step=step, data=np.frombuffer(data, np.uint8))
    out = cv.image_to_rgb(cdr(ts, msg))
    assert out.dtype == np.uint8 and out.shape == (5, 7, 3) and out.flags.writeable
    np.testing.assert_array_equal(out, _expected_rgb(rgb, encoding))
    # rclpy hands out array.array('B'); bytes and lists also work
    for data_value in (array.array("B", data), data, list(data)):
        plain = types.SimpleNamespace(height=5, width=7, encoding=encoding, step=step, data=data_value)
        np.testing.assert_array_equal(cv.image_to_rgb(plain), _expected_rgb(rgb, encoding))


@pytest.mark.parametrize("encoding", ["mono16", "16UC1", "32FC1", "bayer_rggb8", "yuv422", "rgb16", "", "jpeg"])
def test_image_unsupported_encodings_are_refused(fac, encoding):
    msg = fac.make("sensor_msgs/msg/Image", height=2, width=2, encoding=encoding, step=4, data=bytes(8))
    with pytest.raises(MessageError) as err:
        cv.image_to_rgb(msg, topic="/camera/image_raw")
    assert f"image.encoding: {encoding!r} is not supported (use rgb8, bgr8, rgba8, bgra8 or mono8)" in str(err.value)
    assert err.value.topic == "/camera/image_raw" and err.value.field == "image.encoding"


@pytest.mark.parametrize("change, field", [
    (dict(data=bytes(11)), "image.data"),
    (dict(step=5), "image.step"),
    (dict(width=0, step=0, data=b""), "image.width"),
    (dict(height=0, data=b""), "image.height"),
])
def test_image_layout_errors(fac, change, field):
    fields = dict(height=2, width=2, encoding="rgb8", step=6, data=bytes(12))
    fields.update(change)
    with pytest.raises(MessageError) as err:
        cv.image_to_rgb(fac.make("sensor_msgs/msg/Image", **fields))
    assert err.value.field == field


@HYP
@given(h=st.integers(1, 6), w=st.integers(1, 6), pad=st.integers(0, 5),
       encoding=st.sampled_from(sorted(cv.IMAGE_ENCODINGS)), seed=st.integers(0, 2**16))
def test_image_hypothesis_matches_byte_indexing(h, w, pad, encoding, seed):
    rgb = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    data, step = _encode_image(rgb, encoding, pad)
    out = cv.image_to_rgb(types.SimpleNamespace(height=h, width=w, encoding=encoding, step=step, data=data))
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4}[encoding]
    for r, c in [(0, 0), (h - 1, w - 1), (h // 2, w // 3)]:
        px = data[r * step + c * channels: r * step + (c + 1) * channels]
        want = {"rgb8": px[:3], "rgba8": px[:3], "bgr8": px[2::-1], "bgra8": px[2::-1], "mono8": px * 3}[encoding]
        assert tuple(out[r, c]) == tuple(want)


@HYP
@given(h=st.integers(0, 5), w=st.integers(0, 5), step=st.integers(0, 30), n=st.integers(0, 120),
       encoding=st.sampled_from(["rgb8", "bgra8", "mono8", "mono16", "x", "RGB8"]), big=st.booleans(),
       as_list=st.booleans())
def test_image_malformed_raise_message_error_only(h, w, step, n, encoding, big, as_list):
    data = [n % 256] * n if as_list else bytes(n)
    msg = types.SimpleNamespace(height=h, width=w, encoding=encoding, step=step, data=data, is_bigendian=big)
    try:
        out = cv.image_to_rgb(msg)
    except MessageError:
        return
    assert out.shape == (h, w, 3)


def test_image_wrong_types_raise_message_error():
    good = dict(height=1, width=1, encoding="rgb8", step=3, data=bytes(3))
    for change in (dict(height=-1), dict(width=1.5), dict(step=None), dict(data=3.0), dict(encoding=5),
                   dict(data=[256, 0, 0]), dict(data=np.zeros(3, np.float32))):
        with pytest.raises(MessageError):
            cv.image_to_rgb(types.SimpleNamespace(**{**good, **change}))
    with pytest.raises(MessageError, match="image.data: missing"):
        cv.image_to_rgb(types.SimpleNamespace(height=1, width=1, encoding="rgb8", step=3))


# ------------------------------------------------------------------------------------------------
# compressed images
# ------------------------------------------------------------------------------------------------
def _compress(array_: np.ndarray, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array_).save(buf, format=fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt_string", ["png", "rgb8; png compressed bgr8", "bgr8; png compressed bgr8", "", "PNG"])
def test_compressed_png_is_lossless(ts, fac, fmt_string):
    rgb = np.random.default_rng(2).integers(0, 256, (9, 13, 3), dtype=np.uint8)
    msg = fac.make("sensor_msgs/msg/CompressedImage", format=fmt_string,
                   data=np.frombuffer(_compress(rgb, "PNG"), np.uint8))
    np.testing.assert_array_equal(cv.compressed_image_to_rgb(cdr(ts, msg)), rgb)


@pytest.mark.parametrize("fmt_string", ["jpeg", "rgb8; jpeg compressed bgr8", "jpg"])
def test_compressed_jpeg_decodes_colours(ts, fac, fmt_string):
    rgb = np.zeros((32, 48, 3), np.uint8)
    rgb[:, :16] = (250, 10, 10)
    rgb[:, 16:32] = (10, 250, 10)
    rgb[:, 32:] = (10, 10, 250)
    msg = fac.make("sensor_msgs/msg/CompressedImage", format=fmt_string,
                   data=_compress(rgb, "JPEG", quality=95))
    out = cv.compressed_image_to_rgb(cdr(ts, msg))
    assert out.shape == rgb.shape
    assert np.abs(out.astype(int) - rgb).mean() < 6  # red stays red: no channel swap


def test_compressed_mono_and_errors(fac):
    gray = np.arange(48, dtype=np.uint8).reshape(6, 8)
    out = cv.compressed_image_to_rgb(fac.make("sensor_msgs/msg/CompressedImage", format="mono8; png compressed mono8",
                                              data=_compress(gray, "PNG")))
    np.testing.assert_array_equal(out, np.repeat(gray[:, :, None], 3, axis=2))
    depth16 = _compress(np.arange(48, dtype=np.uint16).reshape(6, 8) * 1000, "PNG")
    cases = [
        ("16UC1; compressedDepth png", depth16, "depth"),
        ("png", depth16, "16-bit"),
        ("tiff", _compress(gray, "TIFF"), "not supported"),
        ("", _compress(gray, "TIFF"), "TIFF"),
        ("jpeg", b"not a jpeg at all", "cannot decode"),
        ("jpeg", _compress(np.zeros((8, 8, 3), np.uint8), "JPEG")[:40], "cannot decode"),
        ("png", b"", "empty"),
    ]
    for fmt_string, data, match in cases:
        with pytest.raises(MessageError, match=match):
            cv.compressed_image_to_rgb(fac.make("sensor_msgs/msg/CompressedImage", format=fmt_string, data=data))


def _png_zeros(width: int, height: int, rows: bool = True) -> bytes:
    """A greyscale PNG of zeros, compressed row by row (never held decoded); ``rows=False``: header only."""
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(bytes(width + 1)) for _ in range(height if rows else 0)) + compressor.flush()

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def test_images_over_the_pixel_limit_are_refused_before_decoding(fac):
    """A 140 kB PNG of 12000 x 12000 zeros would decode to 432 MB of RGB (and more downstream): it is
    refused from its header, with next to no memory traced while trying."""
    import tracemalloc

    data = _png_zeros(12000, 12000)
    assert len(data) < 200_000
    with pytest.warns(Image.DecompressionBombWarning), Image.open(io.BytesIO(data)) as im:  # a valid PNG
        assert im.size == (12000, 12000)
    msg = fac.make("sensor_msgs/msg/CompressedImage", format="png", data=data)
    tracemalloc.start()
    try:
        with pytest.raises(MessageError) as err:
            cv.compressed_image_to_rgb(msg, topic="/cam/compressed")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert err.value.field == "compressed_image.data" and err.value.topic == "/cam/compressed"
    assert "12000x12000 = 144000000 pixels" in str(err.value) and "MAX_IMAGE_PIXELS" in str(err.value)
    assert peak < 20_000_000, peak
    # a header beyond twice Pillow's own limit: Pillow refuses at open, the message still names the limit
    huge = fac.make("sensor_msgs/msg/CompressedImage", format="png", data=_png_zeros(20000, 20000, rows=False))
    with pytest.raises(MessageError, match="compressed_image.data: .*MAX_IMAGE_PIXELS"):
        cv.compressed_image_to_rgb(huge)
    # a raw Image: width x height is checked before the data
    with pytest.raises(MessageError) as err:
        cv.image_to_rgb(types.SimpleNamespace(height=8000, width=8000, encoding="mono8", step=8000, data=bytes(16)))
    assert err.value.field == "image.width" and "8000x8000" in str(err.value) and "MAX_IMAGE_PIXELS" in str(err.value)
    # the limit fits 8K video (7680 x 4320) and is exactly constants.MAX_IMAGE_PIXELS
    assert 7680 * 4320 <= C.MAX_IMAGE_PIXELS
    cv._check_pixels(C.MAX_IMAGE_PIXELS // 5000, 5000, "image.width", None)
    with pytest.raises(MessageError, match="image.width"):
        cv._check_pixels(C.MAX_IMAGE_PIXELS // 5000 + 1, 5000, "image.width", None)


@HYP
@given(data=st.binary(max_size=80), fmt_string=st.sampled_from(["jpeg", "png", "", "rgb8; jpeg compressed bgr8"]))
def test_compressed_garbage_raises_message_error_only(data, fmt_string):
    msg = types.SimpleNamespace(format=fmt_string, data=data)
    try:
        cv.compressed_image_to_rgb(msg)
    except MessageError:
        pass


# ------------------------------------------------------------------------------------------------
# point clouds
# ------------------------------------------------------------------------------------------------
_STRUCT_TYPES = {"b": 1, "B": 2, "h": 3, "H": 4, "i": 5, "I": 6, "f": 7, "d": 8}


def _encode_cloud(fac, points, *, order=("x", "y", "z"), kinds=None, big=False, point_pad=0, row_pad=0,
                  height=1):
    """PointCloud2 built with per-point struct.pack_into (independent of the reader's numpy path).

    ``order`` lists field names in memory order; ``kinds`` maps names to struct codes
    (default 'f'); fields other than x, y, z get the value 7.
    """
    kinds = dict(kinds or {})
    end = ">" if big else "<"
    offsets, off = {}, 0
    for name in order:
        offsets[name] = off
        off += struct.calcsize(kinds.get(name, "f"))
    point_step = off + point_pad
    n = len(points)
    assert n % height == 0
    width = n // height
    row_step = width * point_step + row_pad
    data = bytearray(b"\xee" * (row_step * height))
    for i, p in enumerate(np.asarray(points, np.float64).reshape(-1, 3)):
        r, c = divmod(i, width)
        base = r * row_step + c * point_step
        for name in order:
            code = kinds.get(name, "f")
            value = p["xyz".index(name)] if name in "xyz" and len(name) == 1 else 7
            struct.pack_into(end + code, data, base + offsets[name], value)
    fields = [fac.make("sensor_msgs/msg/PointField", name=name, offset=offsets[name],
                       datatype=_STRUCT_TYPES[kinds.get(name, "f")], count=1) for name in order]
    return fac.make("sensor_msgs/msg/PointCloud2", header=header(fac), height=height, width=width, fields=fields,
                    is_bigendian=big, point_step=point_step, row_step=row_step, data=bytes(data), is_dense=False)


def _struct_decode(msg) -> np.ndarray:
    """Every point of ``msg`` decoded with struct.unpack_from (the naive reference)."""
    end = ">" if msg.is_bigendian else "<"
    codes = {7: "f", 8: "d"}
    spec = {f.name: (f.offset, codes[f.datatype]) for f in msg.fields if f.name in ("x", "y", "z")}
    data = bytes(msg.data)
    out = []
    for r in range(msg.height):
        for c in range(msg.width):
            base = r * msg.row_step + c * msg.point_step
            out.append([struct.unpack_from(end + spec[a][1], data, base + spec[a][0])[0] for a in "xyz"])
    out = np.asarray(out, dtype=np.float64).reshape(-1, 3)
    return out[np.isfinite(out).all(axis=1)]


def test_cloud_writer_round_trip_with_labels_and_colours(ts, fac):
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(50, 3))
    labels = rng.integers(0, 8, 50)
    rgb = rng.integers(0, 256, (50, 3))
    msg = cdr(ts, cv.xyz_to_pointcloud2(fac, header(fac), pts, labels=labels, rgb=rgb))
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 1), ("label", 12, 6, 1), ("rgb", 16, 7, 1)]
    assert (msg.point_step, msg.row_step, msg.height, msg.width) == (20, 1000, 1, 50)
    assert msg.is_dense and not msg.is_bigendian and msg.header.frame_id == "map"
    np.testing.assert_array_equal(cv.pointcloud2_to_xyz(msg), pts.astype(np.float32).astype(np.float64))
    raw = bytes(msg.data)
    for i in (0, 17, 49):
        assert struct.unpack_from("<I", raw, i * 20 + 12)[0] == labels[i]
        packed = struct.unpack_from("<I", raw, i * 20 + 16)[0]
        assert packed == (rgb[i, 0] << 16) | (rgb[i, 1] << 8) | rgb[i, 2]
        # the float holds exactly those bits
        assert struct.pack("<f", struct.unpack_from("<f", raw, i * 20 + 16)[0]) == struct.pack("<I", packed)
    plain = cv.xyz_to_pointcloud2(fac, header(fac), pts)
    assert [f.name for f in plain.fields] == ["x", "y", "z"] and plain.point_step == 12
    empty = cdr(ts, cv.xyz_to_pointcloud2(fac, header(fac), np.zeros((0, 3)), labels=np.zeros(0, int)))
    assert cv.pointcloud2_to_xyz(empty).shape == (0, 3)
    for bad in (dict(points=np.zeros((3, 2))), dict(labels=np.array([1, 2])), dict(labels=np.array([-1, 0, 0])),
                dict(rgb=np.full((3, 3), 300)), dict(labels=np.zeros(3, np.float32))):
        kwargs = {"points": np.zeros((3, 3)), **bad}
        with pytest.raises(InputError):
            cv.xyz_to_pointcloud2(fac, header(fac), **kwargs)


def test_contacts_cloud_colours_by_body_part(ts, fac):
    persons = [_person(0), _person(1)]
    persons[1].contact_points_map[0] = np.nan
    msg = cdr(ts, cv.contacts_to_pointcloud2(fac, header(fac), persons))
    assert msg.width == 2 * 5 - 1
    raw = bytes(msg.data)
    for i in range(msg.width):
        label = struct.unpack_from("<I", raw, i * 20 + 12)[0]
        packed = struct.unpack_from("<I", raw, i * 20 + 16)[0]
        r, g, b = C.CONTACT_PART_COLORS[label]
        assert 1 <= label <= 7 and packed == (r << 16) | (g << 8) | b


@pytest.mark.parametrize("layout", [
    dict(order=("z", "x", "y")),
    dict(order=("intensity", "y", "ring", "x", "z"), kinds={"ring": "H", "intensity": "f"}, point_pad=5),
    dict(order=("x", "y", "z"), kinds={"x": "d", "y": "d", "z": "d"}),
    dict(order=("y", "x", "z"), kinds={"x": "d", "z": "f", "y": "d"}, big=True),
    dict(order=("x", "y", "z", "rgb"), big=True, point_pad=3),
    dict(order=("x", "y", "z"), height=3, row_pad=7),
    dict(order=("t", "z", "y", "x"), kinds={"t": "d"}, height=2, row_pad=1, point_pad=2, big=True),
])
def test_cloud_layouts_match_struct_reference(ts, fac, layout):
    rng = np.random.default_rng(4)
    pts = rng.uniform(-50, 50, (12, 3))
    pts[3, 1] = np.nan
    pts[7, 2] = np.inf
    pts[8, 0] = -np.inf
    msg = cdr(ts, _encode_cloud(fac, pts, **layout))
    xyz, dropped = cv.pointcloud2_to_xyz(msg, return_dropped=True)
    assert dropped == 3 and xyz.dtype == np.float64 and xyz.shape == (9, 3)
    np.testing.assert_array_equal(xyz, _struct_decode(msg))
    keep = np.isfinite(pts).all(axis=1)
    np.testing.assert_allclose(xyz, pts[keep], rtol=1e-6, atol=1e-5)


@st.composite
def cloud_layouts(draw):
    extras = draw(st.lists(st.sampled_from(["intensity", "ring", "t", "rgb"]), unique=True, max_size=3))
    order = draw(st.permutations(["x", "y", "z"] + extras))
    kinds = {name: draw(st.sampled_from("fd")) for name in "xyz"}
    kinds.update({name: draw(st.sampled_from("bBhHiIfd")) for name in extras})
    height = draw(st.integers(1, 3))
    width = draw(st.integers(0, 5))
    values = st.one_of(st.floats(-1e4, 1e4, width=32), st.just(float("nan")), st.just(float("inf")))
    pts = draw(st.lists(st.tuples(values, values, values), min_size=height * width, max_size=height * width))
    return dict(order=tuple(order), kinds=kinds, big=draw(st.booleans()), point_pad=draw(st.integers(0, 6)),
                row_pad=draw(st.integers(0, 9)), height=height), np.asarray(pts, np.float64).reshape(-1, 3)


@HYP
@given(case=cloud_layouts())
def test_cloud_hypothesis_matches_struct_reference(fac, case):
    layout, pts = case
    msg = _encode_cloud(fac, pts, **layout)
    xyz, dropped = cv.pointcloud2_to_xyz(msg, return_dropped=True)
    reference = _struct_decode(msg)
    np.testing.assert_array_equal(xyz, reference)
    assert dropped == len(pts) - len(reference)


@pytest.mark.parametrize("mutate, field", [
    (lambda m: m.fields.pop(1), "point_cloud.fields"),
    (lambda m: setattr(m.fields[0], "datatype", 5), "point_cloud.fields[0].datatype"),
    (lambda m: setattr(m.fields[2], "datatype", 42), "point_cloud.fields[2].datatype"),
    (lambda m: setattr(m.fields[1], "name", "x"), "point_cloud.fields"),
    (lambda m: setattr(m, "point_step", 10), "point_cloud.point_step"),
    (lambda m: setattr(m, "row_step", 11), "point_cloud.row_step"),
    (lambda m: setattr(m, "data", m.data[:-1]), "point_cloud.data"),
    (lambda m: setattr(m, "height", 2), "point_cloud.data"),
    (lambda m: setattr(m, "width", -1), "point_cloud.width"),
    (lambda m: setattr(m, "fields", None), "point_cloud.fields"),
])
def test_cloud_malformed_named_errors(fac, mutate, field):
    msg = _encode_cloud(fac, np.ones((4, 3)))
    mutate(msg)
    with pytest.raises(MessageError) as err:
        cv.pointcloud2_to_xyz(msg, topic="/scene/points")
    assert err.value.field == field and str(err.value).startswith("/scene/points: ")


@HYP
@given(case=cloud_layouts(), attr=st.sampled_from(["point_step", "row_step", "height", "width", "data",
                                                   "offset", "datatype", "count", "name"]),
       value=st.integers(-3, 64))
def test_cloud_malformed_raise_message_error_only(fac, case, attr, value):
    layout, pts = case
    msg = _encode_cloud(fac, pts, **layout)
    if attr == "data":
        msg.data = bytes(msg.data)[: max(value, 0)]
    elif attr in ("offset", "datatype", "count"):
        setattr(msg.fields[value % len(msg.fields)], attr, value)
    elif attr == "name":
        msg.fields[value % len(msg.fields)].name = "x" if value % 2 else "nope"
    else:
        setattr(msg, attr, value)
    try:
        xyz = cv.pointcloud2_to_xyz(msg)
    except MessageError:
        return
    assert xyz.ndim == 2 and xyz.shape[1] == 3 and np.isfinite(xyz).all()


# ------------------------------------------------------------------------------------------------
# camera info
# ------------------------------------------------------------------------------------------------
def test_camera_info_round_trip(ts, fac):
    k = [612.5, 0.0, 321.2, 0.0, 611.9, 238.7, 0.0, 0.0, 1.0]
    msg = fac.make("sensor_msgs/msg/CameraInfo", header=header(fac, "cam_optical"), height=480, width=640,
                   distortion_model="plumb_bob", d=[-0.28, 0.07, 0.0005, -0.0002, 0.0], k=k)
    K, model, D, width, height, P = cv.camera_info_to_intrinsics(cdr(ts, msg))
    np.testing.assert_array_equal(K, np.asarray(k).reshape(3, 3))
    assert model == "plumb_bob" and D.tolist() == [-0.28, 0.07, 0.0005, -0.0002, 0.0]
    assert (width, height) == (640, 480) and P is None  # an all-zero p is no projection
    msg.p = np.hstack([np.asarray(k).reshape(3, 3), [[1.0], [2.0], [3.0]]]).reshape(-1)
    np.testing.assert_array_equal(cv.camera_info_to_intrinsics(cdr(ts, msg)).P[:, 3], [1.0, 2.0, 3.0])
    for bad in (float("inf"), -1):
        msg.width = bad
        with pytest.raises(MessageError, match="camera_info.width"):
            cv.camera_info_to_intrinsics(msg)
    ros1 = types.SimpleNamespace(K=tuple(k), D=[0.1], distortion_model="rational_polynomial")
    info = cv.camera_info_to_intrinsics(ros1)
    assert info.K[1, 2] == 238.7 and info.D.tolist() == [0.1] and info.distortion_model == "rational_polynomial"
    rclpy_like = types.SimpleNamespace(k=np.asarray(k), d=array.array("d", [0.0] * 5), distortion_model="plumb_bob")
    assert cv.camera_info_to_intrinsics(rclpy_like).D.shape == (5,)


@pytest.mark.parametrize("k, match", [
    ([0.0] * 9, "not a calibrated camera"),
    ([500, 0, 320, 0, 0, 240, 0, 0, 1], "fy=0"),
    ([500, 0, 0, 0, 500, 240, 0, 0, 1], "cx=0"),
    ([500, 0, 320, 0, 500, 240, 0, 0, float("nan")], "NaN"),
    ([500, 0, 320, 0, 500, float("inf"), 0, 0, 1], "NaN or inf"),
    ([-500, 0, 320, 0, 500, 240, 0, 0, 1], "fx=-500"),
    ([1, 2, 3], "expected 9"),
    (["a"] * 9, "numbers"),
])
def test_camera_info_refused(k, match):
    with pytest.raises(MessageError, match=match) as err:
        cv.camera_info_to_intrinsics(types.SimpleNamespace(k=k, d=[], distortion_model=""), topic="/cam/info")
    assert err.value.field == "camera_info.k"
    with pytest.raises(MessageError, match="camera_info.k: missing"):
        cv.camera_info_to_intrinsics(object())


# ------------------------------------------------------------------------------------------------
# detections
# ------------------------------------------------------------------------------------------------
def _detection_array(fac, dets, legacy: int | None = None):
    """dets: (cx, cy, w, h, theta, [(class, score), ...], id)."""
    out = []
    for cx, cy, w, h, theta, hyps, det_id in dets:
        if legacy is None:
            center = fac.make("vision_msgs/msg/Pose2D", position=fac.make("vision_msgs/msg/Point2D", x=cx, y=cy),
                              theta=theta)
        else:
            center = fac.make("geometry_msgs/msg/Pose2D", x=cx, y=cy, theta=theta)
        bbox = fac.make("vision_msgs/msg/BoundingBox2D", center=center, size_x=w, size_y=h)
        if legacy == 2:
            results = [fac.make("vision_msgs/msg/ObjectHypothesisWithPose", id=c, score=s) for c, s in hyps]
            out.append(fac.make("vision_msgs/msg/Detection2D", results=results, bbox=bbox, tracking_id=det_id))
        else:
            results = [fac.make("vision_msgs/msg/ObjectHypothesisWithPose",
                                hypothesis=fac.make("vision_msgs/msg/ObjectHypothesis", class_id=c, score=s))
                       for c, s in hyps]
            out.append(fac.make("vision_msgs/msg/Detection2D", results=results, bbox=bbox, id=det_id))
    return fac.make("vision_msgs/msg/Detection2DArray", header=header(fac, "cam"), detections=out)


DETS = [
    (100.0, 200.0, 40.0, 80.0, 0.0, [("person", 0.9)], "17"),
    (300.0, 100.0, 20.0, 60.0, math.pi / 2, [("car", 0.8), ("person", 0.3)], "trk-a"),
    (50.0, 50.0, 10.0, 10.0, 0.0, [], ""),
    (400.0, 400.0, 30.0, 10.0, math.pi / 6, [("person", 0.5), ("person", 0.7)], "3"),
    (10.0, 10.0, 4.0, 4.0, 0.0, [("dog", 0.99)], "9"),
]


def _check_detections(msg):
    d = cv.detections_to_boxes(msg)
    assert len(d) == 5 and d.class_ids == ["person", "car", "", "person", "dog"]
    np.testing.assert_allclose(d.scores, [0.9, 0.8, 1.0, 0.7, 0.99])
    assert d.ids == ["17", "trk-a", "", "3", "9"]
    np.testing.assert_allclose(d.boxes[0], [80, 160, 120, 240])
    np.testing.assert_allclose(d.boxes[1], [270, 90, 330, 110], atol=1e-9)  # rotated 90 deg: w and h swap
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    corners = np.array([[sx * 15, sy * 5] for sx in (-1, 1) for sy in (-1, 1)]) @ np.array([[c, s], [-s, c]])
    np.testing.assert_allclose(d.boxes[3], [400 + corners[:, 0].min(), 400 + corners[:, 1].min(),
                                            400 + corners[:, 0].max(), 400 + corners[:, 1].max()])
    people = cv.detections_to_boxes(msg, class_ids=["person"], min_score=0.25)
    assert people.indices.tolist() == [0, 1, 2, 3]  # the empty-results box passes the class filter
    np.testing.assert_allclose(people.scores, [0.9, 0.3, 1.0, 0.7])  # score of the best *person* hypothesis
    assert people.class_ids == ["person", "person", "", "person"]
    assert cv.detections_to_boxes(msg, class_ids=["person"], min_score=0.5).indices.tolist() == [0, 2, 3]
    assert cv.detections_to_boxes(msg, min_score=0.95).indices.tolist() == [2, 4]
    assert cv.detections_to_boxes(msg, class_ids="dog").indices.tolist() == [2, 4]


def test_detections_vision_msgs_4(ts, fac):
    msg = cdr(ts, _detection_array(fac, DETS))
    assert hasattr(msg.detections[0].bbox.center, "position")
    _check_detections(msg)
    assert cv.detections_to_boxes(fac.make("vision_msgs/msg/Detection2DArray")).boxes.shape == (0, 4)


@pytest.mark.parametrize("version", [3, 2])
def test_detections_foxy_layouts(version):
    ts = make_legacy_vision_typestore(version)
    fac = RosbagsFactory(ts)
    msg = cdr(ts, _detection_array(fac, DETS, legacy=version))
    assert hasattr(msg.detections[0].bbox.center, "x")
    _check_detections(msg)


@pytest.mark.parametrize("det, field", [
    ((1.0, 1.0, float("nan"), 2.0, 0.0, [], ""), "detections[0].bbox.size_x"),
    ((1.0, 1.0, 2.0, -2.0, 0.0, [], ""), "detections[0].bbox.size_y"),
    ((float("inf"), 1.0, 2.0, 2.0, 0.0, [], ""), "detections[0].bbox.center.position.x"),
    ((1.0, 1.0, 2.0, 2.0, 0.0, [("person", float("nan"))], ""), "detections[0].results[0].hypothesis.score"),
])
def test_detections_malformed(fac, det, field):
    """One bad detection is skipped with its field named; the good ones around it are kept."""
    good = (100.0, 80.0, 40.0, 120.0, 0.0, [("person", 0.9)], "a")
    out = cv.detections_to_boxes(_detection_array(fac, [good, det, good]))
    assert out.indices.tolist() == [0, 2] and out.ids == ["a", "a"]
    np.testing.assert_allclose(out.boxes, [[80.0, 20.0, 120.0, 140.0]] * 2)
    assert [i for i, _ in out.skipped] == [1]
    assert out.skipped[0][1].startswith(field.replace("detections[0]", "detections[1]") + ":")
    for bad in (types.SimpleNamespace(detections=5), types.SimpleNamespace()):
        with pytest.raises(MessageError):
            cv.detections_to_boxes(bad)
    no_center = types.SimpleNamespace(results=[], bbox=types.SimpleNamespace(size_x=1, size_y=1))
    out = cv.detections_to_boxes(types.SimpleNamespace(detections=[no_center]))
    assert len(out) == 0 and "detections[0].bbox.center" in out.skipped[0][1]


# ------------------------------------------------------------------------------------------------
# transforms
# ------------------------------------------------------------------------------------------------
def test_transform_to_matrix(ts, fac):
    h = math.sqrt(0.5)
    tf = fac.make("geometry_msgs/msg/TransformStamped", header=header(fac), child_frame_id="cam",
                  transform=fac.make("geometry_msgs/msg/Transform",
                                     translation=fac.make("geometry_msgs/msg/Vector3", x=1.0, y=2.0, z=3.0),
                                     rotation=fac.make("geometry_msgs/msg/Quaternion", x=0.0, y=0.0, z=h, w=h)))
    T = cv.transform_to_matrix(cdr(ts, tf))
    expected = np.array([[0, -1, 0, 1], [1, 0, 0, 2], [0, 0, 1, 3], [0, 0, 0, 1]], dtype=float)
    np.testing.assert_allclose(T, expected, atol=1e-12)
    np.testing.assert_allclose(cv.transform_to_matrix(tf.transform), expected, atol=1e-12)
    identity = cv.transform_to_matrix(fac.make("geometry_msgs/msg/Pose"))  # Pose works too
    np.testing.assert_array_equal(identity, np.eye(4))
    # x by 180 degrees: y -> -y, z -> -z
    flip = fac.make("geometry_msgs/msg/Transform", rotation=fac.make("geometry_msgs/msg/Quaternion", x=1.0, w=0.0))
    np.testing.assert_allclose(cv.transform_to_matrix(flip)[:3, :3], np.diag([1.0, -1.0, -1.0]), atol=1e-12)
    zero = fac.make("geometry_msgs/msg/Transform", rotation=fac.make("geometry_msgs/msg/Quaternion", w=0.0))
    with pytest.raises(MessageError, match="not unit length"):
        cv.transform_to_matrix(zero)
    nan = fac.make("geometry_msgs/msg/Transform",
                   translation=fac.make("geometry_msgs/msg/Vector3", x=float("nan")))
    with pytest.raises(MessageError, match="transform.translation.x"):
        cv.transform_to_matrix(nan)
    with pytest.raises(MessageError):
        cv.transform_to_matrix(object())


# ------------------------------------------------------------------------------------------------
# outputs: markers, HumanMeshArray, diagnostics
# ------------------------------------------------------------------------------------------------
def _person(i, flags=()):
    rng = np.random.default_rng(10 + i)
    return types.SimpleNamespace(
        box_index=i, box_xyxy=np.array([10.0 * i, 20.0, 30.0 + i, 40.0]), score=0.5 + 0.1 * i,
        root_map=rng.normal(size=3), root_camera=rng.normal(size=3), coarse_root_camera=rng.normal(size=3),
        joints14_map=rng.normal(size=(14, 3)).astype(np.float32),
        vertices_map=rng.normal(size=(C.NUM_VERTICES, 3)).astype(np.float32),
        contact_points_map=rng.normal(size=(5, 3)).astype(np.float32), contact_labels=np.arange(1, 6, dtype=np.int64),
        num_roi_voxels=10, flags=tuple(flags))


@pytest.fixture(scope="module")
def faces():
    return np.random.default_rng(5).integers(0, C.NUM_VERTICES, (C.NUM_FACES, 3))


def test_mesh_markers(ts, fac, faces):
    persons = [_person(0), _person(1), _person(2)]
    ids = ["42", "track-b", ""]
    ma = cv.mesh_markers(fac, header(fac), persons, faces, lifetime_s=0.5, ns="sahmr", ids=ids)
    first = ma.markers[0]
    assert first.action == 3 and first.ns == "sahmr" and len(ma.markers) == 4
    expected_ids = [42, zlib.crc32(b"track-b") & 0x7FFFFFFF, -3]
    assert [m.id for m in ma.markers[1:]] == expected_ids
    back = cdr(ts, fac.make("visualization_msgs/msg/MarkerArray", markers=ma.markers[:2]))
    m = back.markers[1]
    assert (m.type, m.action, m.ns, m.header.frame_id) == (11, 0, "sahmr", "map")
    assert len(m.points) == 3 * 13776 == 41328
    assert (m.pose.orientation.w, m.pose.position.x, m.scale.x, m.scale.y, m.scale.z) == (1.0, 0.0, 1.0, 1.0, 1.0)
    assert (m.lifetime.sec, m.lifetime.nanosec) == (0, 500_000_000) and m.color.a == 1.0
    pts = np.array([[p.x, p.y, p.z] for p in m.points])
    np.testing.assert_array_equal(pts, persons[0].vertices_map[faces].reshape(-1, 3).astype(np.float64))
    again = cv.mesh_markers(fac, header(fac), persons[::-1], faces, ids=ids[::-1])
    assert [m.id for m in again.markers[1:]] == [-1, expected_ids[1], 42]  # ids follow the detection id
    colours = {m.id: (m.color.r, m.color.g, m.color.b) for m in ma.markers[1:]}
    assert all(colours[m.id] == (m.color.r, m.color.g, m.color.b) for m in again.markers[1:] if m.id > 0)
    # no persons: only the DELETEALL; broken persons are left out; colliding ids are separated
    assert [m.action for m in cv.mesh_markers(fac, header(fac), [], faces).markers] == [3]
    broken = _person(3, flags=("non_finite_output",))
    nan_person = _person(4)
    nan_person.vertices_map[5] = np.nan
    out = cv.mesh_markers(fac, header(fac), [broken, nan_person, persons[0], persons[1]], faces,
                          ids=["1", "2", "7", "7"])
    assert [m.id for m in out.markers[1:]] == [7, -4]
    with pytest.raises(InputError, match="faces"):
        cv.mesh_markers(fac, header(fac), persons, faces + C.NUM_VERTICES)
    with pytest.raises(InputError, match="ids"):
        cv.mesh_markers(fac, header(fac), persons, faces, ids=["1"])


def test_mesh_markers_take_the_tracks_marker_ids_and_keep_their_colours(fac, faces):
    persons = [_person(0), _person(1), _person(2)]
    frames = [cv.mesh_markers(fac, header(fac), order, faces, ids=["", "", "9"], marker_ids=[3, 12, None])
              for order in (persons, persons[::-1])]
    assert [m.id for m in frames[0].markers[1:]] == [3, 12, 9]
    assert [m.id for m in frames[1].markers[1:]] == [3, 12, 9]  # marker_ids follow the person, not the order
    for m in frames[0].markers[1:]:
        assert (m.color.r, m.color.g, m.color.b) == cv.MESH_PALETTE[m.id % len(cv.MESH_PALETTE)]
    with pytest.raises(InputError, match="marker_ids"):
        cv.mesh_markers(fac, header(fac), persons, faces, marker_ids=[1])


def test_marker_id_rule():
    assert cv.marker_id("0", 5) == 0 and cv.marker_id(" 12 ", 0) == 12
    assert cv.marker_id("", 0) == -1 and cv.marker_id("", 4) == -5
    assert cv.marker_id("99999999999", 0) == zlib.crc32(b"99999999999") & 0x7FFFFFFF
    assert cv.marker_id("-3", 0) == zlib.crc32(b"-3") & 0x7FFFFFFF
    assert cv.marker_id("person_1", 0) == cv.marker_id("person_1", 9) >= 0


def test_human_mesh_array_round_trip(ts, fac):
    persons = [_person(0, flags=("no_scene_points",)), _person(1)]
    msg = cdr(ts, cv.human_mesh_array(fac, header(fac, "map", 123), persons, ids=["5", ""], track_ids=["5", "t3"]))
    assert msg.header.frame_id == "map" and stamp_to_ns(msg.header.stamp) == 123 and len(msg.humans) == 2
    for p, h, det_id, track_id in zip(persons, msg.humans, ["5", ""], ["5", "t3"]):
        assert h.id == det_id and h.track_id == track_id and h.score == pytest.approx(p.score, rel=1e-6)
        np.testing.assert_array_equal(h.box, p.box_xyxy.astype(np.float32))
        assert (h.root.x, h.root.y, h.root.z) == tuple(p.root_map)
        np.testing.assert_array_equal(h.joints.reshape(14, 3), p.joints14_map)
        np.testing.assert_array_equal(h.vertices.reshape(-1, 3), p.vertices_map)
        np.testing.assert_array_equal(h.contact_points.reshape(-1, 3), p.contact_points_map)
        assert h.contact_labels.dtype == np.uint32 and h.contact_labels.tolist() == [1, 2, 3, 4, 5]
        assert list(h.flags) == list(p.flags)
    assert cdr(ts, cv.human_mesh_array(fac, header(fac), [])).humans == []
    assert [h.track_id for h in cdr(ts, cv.human_mesh_array(fac, header(fac), persons)).humans] == ["", ""]
    with pytest.raises(InputError, match="track_ids"):
        cv.human_mesh_array(fac, header(fac), persons, track_ids=["t1"])


def test_diagnostics_round_trip(ts, fac):
    msg = cdr(ts, cv.diagnostics(fac, 2_500_000_000, "WARN", "slow", {"fps": 3.14159265, "frames": 7}))
    assert stamp_to_ns(msg.header.stamp) == 2_500_000_000
    (status,) = msg.status
    assert (status.level, status.name, status.message) == (1, "sahmr_node: pipeline", "slow")
    assert [(kv.key, kv.value) for kv in status.values] == [("fps", "3.14159"), ("frames", "7")]
    assert cv.diagnostics(fac, ns_to_time(fac, 0), 2, "x").status[0].level == 2
    with pytest.raises(InputError):
        cv.diagnostics(fac, 0, "FATAL", "x")
    with pytest.raises(InputError):
        cv.diagnostics(fac, 0, 7, "x")


def test_flag_name_matches_pipeline():
    from sahmr_ros import pipeline

    assert C.FLAG_NON_FINITE == pipeline.FLAG_NON_FINITE  # the flag mesh_markers reads


# ------------------------------------------------------------------------------------------------
# RclpyFactory against fake generated classes (rosidl_generator_py's setter rules)
# ------------------------------------------------------------------------------------------------
_IDL_CHECKS = {
    "double": float, "float": float, "boolean": bool, "string": str,
    "int8": int, "uint8": int, "int16": int, "uint16": int, "int32": int, "uint32": int, "int64": int,
}
_IDL_NUMPY = {"double": np.float64, "float": np.float32, "uint8": np.uint8, "uint32": np.uint32, "int32": np.int32}
_IDL_CODES = {"double": "d", "float": "f", "uint8": "B", "uint32": "I", "int32": "i"}


def _fake_class(pkg: str, name: str, fields: dict[str, str], defaults: dict | None = None):
    """A class behaving like rosidl_generator_py output (Humble, ``__debug__`` checks on).

    Scalars must have the exact Python type (a numpy scalar or an int in a float field fails);
    primitive sequences take array.array of the right typecode fast, else any sequence of the
    right element type, and store array.array; fixed arrays take numpy arrays of the right dtype
    and size; nested fields and sequences must hold instances of the nested class.
    """
    defaults = defaults or {}

    def nested(typ):
        p, n = typ.split("/")
        return getattr(sys.modules[f"{p}.msg"], n)

    def make_property(field, typ):
        def getter(self):
            return getattr(self, "_" + field)

        def setter(self, value):
            if typ.startswith("sequence<"):
                inner = typ[len("sequence<"):-1]
                if inner in _IDL_CODES:
                    if isinstance(value, array.array):
                        assert value.typecode == _IDL_CODES[inner], f"{field}: typecode"
                    else:
                        assert not isinstance(value, (str, np.ndarray)) and all(
                            isinstance(v, _IDL_CHECKS[inner]) for v in value), f"{field}: elements"
                        value = array.array(_IDL_CODES[inner], value)
                elif inner == "string":
                    assert all(isinstance(v, str) for v in value), f"{field}: strings"
                else:
                    assert all(isinstance(v, nested(inner)) for v in value), f"{field}: nested"
            elif "[" in typ:
                inner, size = typ[:-1].split("[")
                assert isinstance(value, np.ndarray) and value.dtype == _IDL_NUMPY[inner] and value.size == int(size)
            elif "/" in typ:
                assert isinstance(value, nested(typ)), f"{field}: must be {typ}"
            elif typ == "octet":
                assert isinstance(value, bytes) and len(value) == 1, f"{field}: octet"
            else:
                assert isinstance(value, _IDL_CHECKS[typ]) and not (
                    typ != "boolean" and isinstance(value, bool)), f"{field}: {typ} got {type(value)}"
            setattr(self, "_" + field, value)

        return property(getter, setter)

    def default(typ):
        if typ.startswith("sequence<"):
            inner = typ[len("sequence<"):-1]
            return array.array(_IDL_CODES[inner]) if inner in _IDL_CODES else []
        if "[" in typ:
            inner, size = typ[:-1].split("[")
            return np.zeros(int(size), _IDL_NUMPY[inner])
        if "/" in typ:
            return nested(typ)()
        return {"octet": b"\x00", "string": "", "boolean": False}.get(typ, _IDL_CHECKS[typ]())

    def __init__(self, **kwargs):
        assert all(k in fields for k in kwargs), f"Invalid arguments passed to constructor: {sorted(kwargs)}"
        for field, typ in fields.items():
            setattr(self, field, kwargs[field] if field in kwargs else defaults.get(field, default(typ)))

    namespace = {"__slots__": ["_" + f for f in fields], "__init__": __init__,
                 "_fields_and_field_types": dict(fields),
                 "get_fields_and_field_types": classmethod(lambda cls: dict(cls._fields_and_field_types))}
    namespace.update({f: make_property(f, t) for f, t in fields.items()})
    cls = type(name, (), namespace)
    setattr(sys.modules[f"{pkg}.msg"], name, cls)
    return cls


@pytest.fixture()
def fake_rclpy_messages(monkeypatch):
    for pkg in ("builtin_interfaces", "std_msgs", "geometry_msgs", "sensor_msgs", "visualization_msgs",
                "diagnostic_msgs", "sahmr_ros"):
        monkeypatch.setitem(sys.modules, f"{pkg}.msg", types.ModuleType(f"{pkg}.msg"))
        if pkg != "sahmr_ros":
            monkeypatch.setitem(sys.modules, pkg, types.ModuleType(pkg))
    time_fields = {"sec": "int32", "nanosec": "uint32"}
    _fake_class("builtin_interfaces", "Time", time_fields)
    _fake_class("builtin_interfaces", "Duration", time_fields)
    _fake_class("std_msgs", "Header", {"stamp": "builtin_interfaces/Time", "frame_id": "string"})
    _fake_class("std_msgs", "ColorRGBA", {c: "float" for c in "rgba"})
    _fake_class("geometry_msgs", "Point", {c: "double" for c in "xyz"})
    _fake_class("geometry_msgs", "Vector3", {c: "double" for c in "xyz"})
    _fake_class("geometry_msgs", "Quaternion", {c: "double" for c in "xyzw"}, defaults={"w": 1.0})
    _fake_class("geometry_msgs", "Pose", {"position": "geometry_msgs/Point", "orientation": "geometry_msgs/Quaternion"})
    _fake_class("sensor_msgs", "PointField", {"name": "string", "offset": "uint32", "datatype": "uint8",
                                              "count": "uint32"})
    _fake_class("sensor_msgs", "PointCloud2", {
        "header": "std_msgs/Header", "height": "uint32", "width": "uint32",
        "fields": "sequence<sensor_msgs/PointField>", "is_bigendian": "boolean", "point_step": "uint32",
        "row_step": "uint32", "data": "sequence<uint8>", "is_dense": "boolean"})
    _fake_class("visualization_msgs", "Marker", {
        "header": "std_msgs/Header", "ns": "string", "id": "int32", "type": "int32", "action": "int32",
        "pose": "geometry_msgs/Pose", "scale": "geometry_msgs/Vector3", "color": "std_msgs/ColorRGBA",
        "lifetime": "builtin_interfaces/Duration", "frame_locked": "boolean",
        "points": "sequence<geometry_msgs/Point>", "colors": "sequence<std_msgs/ColorRGBA>", "text": "string"})
    _fake_class("visualization_msgs", "MarkerArray", {"markers": "sequence<visualization_msgs/Marker>"})
    _fake_class("diagnostic_msgs", "KeyValue", {"key": "string", "value": "string"})
    _fake_class("diagnostic_msgs", "DiagnosticStatus", {
        "level": "octet", "name": "string", "message": "string", "hardware_id": "string",
        "values": "sequence<diagnostic_msgs/KeyValue>"})
    _fake_class("diagnostic_msgs", "DiagnosticArray", {"header": "std_msgs/Header",
                                                       "status": "sequence<diagnostic_msgs/DiagnosticStatus>"})
    _fake_class("sahmr_ros", "HumanMesh", {
        "id": "string", "track_id": "string", "score": "float", "box": "float[4]", "root": "geometry_msgs/Point",
        "joints": "sequence<float>", "vertices": "sequence<float>", "contact_points": "sequence<float>",
        "contact_labels": "sequence<uint32>", "flags": "sequence<string>"})
    _fake_class("sahmr_ros", "HumanMeshArray", {"header": "std_msgs/Header", "humans": "sequence<sahmr_ros/HumanMesh>"})
    return RclpyFactory()


def test_fake_classes_are_strict(fake_rclpy_messages):
    point = sys.modules["geometry_msgs.msg"].Point
    for bad in (dict(x=1), dict(x=np.float32(1.0)), dict(q=1.0)):
        with pytest.raises(AssertionError):
            point(**bad)
    cloud = sys.modules["sensor_msgs.msg"].PointCloud2
    with pytest.raises(AssertionError):
        cloud(data=array.array("b", [1]))
    with pytest.raises(AssertionError):
        cloud(data=np.zeros(3, np.uint8))


def test_rclpy_factory_builds_every_output(fake_rclpy_messages, faces):
    fac = fake_rclpy_messages
    hdr = fac.make("std_msgs/msg/Header", stamp=ns_to_time(fac, 5_000_000_001), frame_id="map")
    assert (hdr.stamp.sec, hdr.stamp.nanosec) == (5, 1)
    assert fac.make("geometry_msgs/msg/Point", x=np.float32(1.5), y=2, z=np.int64(3)).z == 3.0
    assert fac.array(np.arange(3, dtype=np.uint32)).typecode == "I"
    pts = np.random.default_rng(6).normal(size=(7, 3))
    labels = np.arange(7)
    cloud = cv.xyz_to_pointcloud2(fac, hdr, pts, labels=labels, rgb=np.full((7, 3), 9))
    assert isinstance(cloud.data, array.array) and cloud.data.typecode == "B"
    np.testing.assert_array_equal(cv.pointcloud2_to_xyz(cloud), pts.astype(np.float32))  # reads rclpy messages
    persons = [_person(0), _person(1)]
    ma = cv.mesh_markers(fac, hdr, persons, faces, lifetime_s=1.25, ids=["4", ""])
    assert [m.action for m in ma.markers] == [3, 0, 0] and [m.id for m in ma.markers[1:]] == [4, -2]
    m = ma.markers[1]
    assert len(m.points) == 41328 and m.pose.orientation.w == 1.0 and (m.lifetime.sec, m.lifetime.nanosec) == (
        1, 250_000_000)
    assert (m.points[0].x, m.points[0].y, m.points[0].z) == tuple(persons[0].vertices_map[faces[0, 0]].tolist())
    arr = cv.human_mesh_array(fac, hdr, persons, ids=["4", ""], track_ids=["4", "t1"])
    h = arr.humans[0]
    assert (h.track_id, arr.humans[1].track_id) == ("4", "t1")
    assert h.joints.typecode == "f" and len(h.vertices) == 6890 * 3 and h.contact_labels.typecode == "I"
    assert h.box.dtype == np.float32 and list(h.contact_labels) == [1, 2, 3, 4, 5]
    diag = cv.diagnostics(fac, hdr.stamp, "ERROR", "no model", {"a": 1})
    assert diag.status[0].level == b"\x02" and diag.status[0].values[0].value == "1"
    contacts = cv.contacts_to_pointcloud2(fac, hdr, persons)
    assert contacts.width == 10


# ------------------------------------------------------------------------------------------------
# writers of input messages: through CDR and back through the readers
# ------------------------------------------------------------------------------------------------
def test_input_writers_round_trip_through_the_readers(ts, fac):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    image = cdr(ts, cv.rgb_to_image(fac, header(fac, "cam"), rgb))
    assert (image.encoding, image.step, image.height, image.width) == ("rgb8", 21, 5, 7)
    np.testing.assert_array_equal(cv.image_to_rgb(image), rgb)

    K = np.array([[500.0, 0.0, 320.0], [0.0, 510.0, 240.0], [0.0, 0.0, 1.0]])
    info = cdr(ts, cv.intrinsics_to_camera_info(fac, header(fac, "cam"), K, 640, 480, D=(-0.1, 0.01, 0, 0, 0)))
    intr = cv.camera_info_to_intrinsics(info)
    np.testing.assert_array_equal(intr.K, K)
    np.testing.assert_array_equal(intr.D, [-0.1, 0.01, 0, 0, 0])
    assert (info.width, info.height, intr.distortion_model) == (640, 480, "plumb_bob")
    np.testing.assert_array_equal(np.reshape(info.p, (3, 4)), np.hstack([K, np.zeros((3, 1))]))

    boxes = np.array([[10.0, 20.0, 50.0, 120.0], [200.5, 30.25, 260.0, 300.0]])
    dets = cdr(ts, cv.boxes_to_detections(fac, header(fac, "cam"), boxes, ids=["7", "tr-2"],
                                          class_ids=["person", "chair"], scores=[0.9, 0.4]))
    read = cv.detections_to_boxes(dets)
    np.testing.assert_allclose(read.boxes, boxes)
    assert read.ids == ["7", "tr-2"] and read.class_ids == ["person", "chair"]
    np.testing.assert_allclose(read.scores, [0.9, 0.4])
    assert cv.detections_to_boxes(cdr(ts, cv.boxes_to_detections(fac, header(fac), boxes))).ids == ["1", "2"]

    T = np.eye(4)
    T[:3, :3] = Rotation.from_euler("zyx", [30, -20, 10], degrees=True).as_matrix()
    T[:3, 3] = [1.5, -2.0, 0.25]
    tf = cdr(ts, cv.matrix_to_transform(fac, header(fac, "map"), "camera", T))
    assert (tf.header.frame_id, tf.child_frame_id) == ("map", "camera")
    np.testing.assert_allclose(cv.transform_to_matrix(tf), T, atol=1e-12)
