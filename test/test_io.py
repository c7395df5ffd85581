"""Input readers and output writers: round trips through real serialisers, and named errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import trimesh

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.io import (
    Camera,
    normalise_distortion,
    read_boxes,
    read_camera,
    read_image,
    read_point_cloud,
    read_pose,
    undistort_image,
    write_labelled_points_ply,
    write_mesh,
)

ROS_CAMERA_YAML = """\
image_width: 640
image_height: 480
camera_name: narrow_stereo
camera_matrix:
  rows: 3
  cols: 3
  data: [612.5, 0.0, 321.2, 0.0, 611.9, 238.7, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.28, 0.07, 0.0005, -0.0002, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1, 0, 0, 0, 1, 0, 0, 0, 1]
projection_matrix:
  rows: 3
  cols: 4
  data: [500.0, 0.0, 320.0, 0.0, 0.0, 500.0, 240.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def _write(path, text):
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------------------
# camera
# ------------------------------------------------------------------------------------------------
def test_ros_camera_yaml(tmp_path):
    cam = read_camera(_write(tmp_path / "cam.yaml", ROS_CAMERA_YAML))
    np.testing.assert_allclose(cam.K, [[612.5, 0, 321.2], [0, 611.9, 238.7], [0, 0, 1]])
    np.testing.assert_allclose(cam.distortion, [-0.28, 0.07, 0.0005, -0.0002, 0.0])
    assert (cam.width, cam.height, cam.model) == (640, 480, "plumb_bob")
    assert cam.K.dtype == np.float64 and cam.has_distortion


def test_simple_camera_layouts(tmp_path):
    K = [[500.0, 0.0, 320.0], [0.0, 505.0, 240.0], [0.0, 0.0, 1.0]]
    cam = read_camera(_write(tmp_path / "cam.json", json.dumps({"K": K, "width": 640, "height": 480})))
    np.testing.assert_allclose(cam.K, K)
    assert cam.distortion.shape == (0,) and not cam.has_distortion and cam.width == 640

    cam = read_camera(_write(tmp_path / "cam.yml", "fx: 500\nfy: 505\ncx: 320\ncy: 240\ndist: [0.1, 0, 0, 0]\n"))
    np.testing.assert_allclose(cam.K, K)
    assert cam.model == "plumb_bob" and cam.width is None and cam.distortion.tolist() == [0.1, 0, 0, 0]

    # sensor_msgs/CameraInfo as echoed by `ros2 topic echo --once`
    echo = "height: 480\nwidth: 640\ndistortion_model: rational_polynomial\nd: [0, 0, 0, 0, 0, 0, 0, 0]\n" \
           "k: [500.0, 0.0, 320.0, 0.0, 505.0, 240.0, 0.0, 0.0, 1.0]\n"
    cam = read_camera(_write(tmp_path / "info.yaml", echo))
    np.testing.assert_allclose(cam.K, K)
    assert cam.model == "rational_polynomial" and cam.distortion.shape == (8,)


@pytest.mark.parametrize(
    "text, field",
    [
        (ROS_CAMERA_YAML.replace("camera_matrix:", "camera_matrx:"), "camera_matrix"),
        (ROS_CAMERA_YAML.replace("rows: 3\n  cols: 3\n  data: [612", "rows: 2\n  cols: 3\n  data: [612"),
         "camera_matrix.rows"),
        (ROS_CAMERA_YAML.replace("612.5, 0.0, 321.2, ", ""), "camera_matrix.data"),
        (ROS_CAMERA_YAML.replace("612.5", ".nan"), "NaN"),
        (ROS_CAMERA_YAML.replace("612.5", "-612.5"), "focal"),
        (ROS_CAMERA_YAML.replace("612.5", "abc"), "camera_matrix.data"),
        (ROS_CAMERA_YAML.replace("image_width: 640", "image_width: -640"), "image_width"),
        (ROS_CAMERA_YAML.replace("cols: 5\n  data: [", "cols: 8\n  data: [0, 0, 0, "), "distortion_coefficients"),
        ("K: [[500, 0, 320], [0, 500, 240]]\n", "`K`"),
        ("fx: 500\nfy: 500\ncx: [1, 2]\ncy: 240\n", "`cx`"),
        ("K: [1, 2\n", "not valid YAML"),
        ("- 1\n- 2\n", "mapping"),
    ],
)
def test_malformed_camera_names_file_and_field(tmp_path, text, field):
    path = _write(tmp_path / "my_cam.yaml", text)
    with pytest.raises(InputError) as e:
        read_camera(path)
    assert "my_cam.yaml" in str(e.value) and field in str(e.value)


def test_camera_file_errors(tmp_path):
    with pytest.raises(InputError, match="missing_cam.yaml: camera file not found"):
        read_camera(tmp_path / "missing_cam.yaml")
    with pytest.raises(InputError, match=r"cam\.txt.*\.yaml"):
        read_camera(_write(tmp_path / "cam.txt", "fx: 1"))


def _forward_distortion(x, y, k):
    """OpenCV's model, written out from its documentation (independent of sahmr_ros.io)."""
    k1, k2, p1, p2, k3, k4, k5, k6 = k
    r2 = x**2 + y**2
    radial = (1 + k1 * r2 + k2 * r2**2 + k3 * r2**3) / (1 + k4 * r2 + k5 * r2**2 + k6 * r2**3)
    return (x * radial + 2 * p1 * x * y + p2 * (r2 + 2 * x**2),
            y * radial + p1 * (r2 + 2 * y**2) + 2 * p2 * x * y)


def _forward_equidistant(x, y, k):
    """OpenCV's fisheye model, from its documentation: theta = atan(r), theta_d = theta (1 + k1 theta^2 + ...)."""
    r = np.hypot(x, y)
    theta = np.arctan(r)
    theta_d = theta * (1 + k[0] * theta**2 + k[1] * theta**4 + k[2] * theta**6 + k[3] * theta**8)
    scale = np.where(r > 0, theta_d / np.where(r > 0, r, 1.0), 1.0)
    return x * scale, y * scale


def _inverse_equidistant(xd, yd, k):
    """Where a distorted normalised point came from: Newton on theta_d(theta), then r = tan(theta)."""
    theta_d = np.hypot(xd, yd)
    theta = theta_d.copy()
    for _ in range(30):
        t2 = theta**2
        f = theta * (1 + k[0] * t2 + k[1] * t2**2 + k[2] * t2**3 + k[3] * t2**4) - theta_d
        theta = theta - f / (1 + 3 * k[0] * t2 + 5 * k[1] * t2**2 + 7 * k[2] * t2**3 + 9 * k[3] * t2**4)
    scale = np.where(theta_d > 0, np.tan(theta) / np.where(theta_d > 0, theta_d, 1.0), 1.0)
    return xd * scale, yd * scale


def _pattern(u, v):
    """Smooth checkerboard (8 px squares, softened so bilinear sampling is accurate), 0..255."""
    return 127.5 + 127.5 * np.tanh(2.0 * np.sin(np.pi * u / 16) * np.sin(np.pi * v / 16))


def _distorted_image(K, coeffs, H, W, model="plumb_bob"):
    """The image the lens would take of ``_pattern``: invert the forward model per pixel."""
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    xd, yd = (u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1]
    if model == "equidistant":
        x, y = _inverse_equidistant(xd, yd, coeffs)
        forward = _forward_equidistant
    else:
        x, y = xd.copy(), yd.copy()
        for _ in range(50):  # Newton-free fixed point, as cv::undistortPoints
            fx_, fy_ = _forward_distortion(x, y, coeffs)
            x, y = x + (xd - fx_), y + (yd - fy_)
        forward = _forward_distortion
    assert np.abs(np.stack(forward(x, y, coeffs)) - np.stack([xd, yd])).max() < 1e-9
    img = _pattern(K[0, 0] * x + K[0, 2], K[1, 1] * y + K[1, 2])
    return np.repeat(np.rint(img)[..., None], 3, axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    "model, coeffs",
    [
        ("plumb_bob", [-0.25, 0.08, 0.001, -0.0008, -0.01]),
        ("rational_polynomial", [0.4, -0.05, 0.0005, 0.0007, 0.0, 0.6, -0.02, 0.0]),
        ("equidistant", [0.05, -0.01, 0.002, -0.0005]),
    ],
)
def test_undistortion_inverts_the_forward_model(model, coeffs):
    H, W = 240, 320
    K = np.array([[280.0, 0.0, 161.0], [0.0, 282.0, 118.0], [0.0, 0.0, 1.0]])
    padded = np.zeros(4 if model == "equidistant" else 8)
    padded[: len(coeffs)] = coeffs
    distorted = _distorted_image(K, padded, H, W, model)
    cam = Camera(K=K, distortion=np.asarray(coeffs), width=W, height=H, model=model)
    out, K_new = undistort_image(distorted, cam)
    np.testing.assert_array_equal(K_new, K)
    assert out.shape == distorted.shape and out.dtype == np.uint8
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    truth = _pattern(u, v)
    centre = (slice(H // 5, H - H // 5), slice(W // 5, W - W // 5))
    err = np.abs(out[..., 0].astype(np.float64) - truth)[centre].mean()
    before = np.abs(distorted[..., 0].astype(np.float64) - truth)[centre].mean()
    assert err < 4.0, (err, before)
    assert before > 10 * err  # the distortion was visible, and is gone
    # the wrong direction (negated coefficients) does not pass the same check
    wrong, _ = undistort_image(distorted, Camera(K=K, distortion=-np.asarray(coeffs), width=W, height=H, model=model))
    assert np.abs(wrong[..., 0].astype(np.float64) - truth)[centre].mean() > 5 * err


def test_undistortion_identity_and_refusals():
    K = np.array([[300.0, 0, 80], [0, 300.0, 60], [0, 0, 1]])
    img = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    for model, dist in (("plumb_bob", np.zeros(5)), ("equidistant", np.zeros(4)), ("plumb_bob", np.zeros(0))):
        out, K_new = undistort_image(img, Camera(K, dist, 160, 120, model, "cam.yaml"))
        assert out is img
        np.testing.assert_array_equal(K_new, K)
    with pytest.raises(InputError, match=r"cam\.yaml.*'kannala_brandt'.*equidistant.*rectified"):
        undistort_image(img, Camera(K, np.array([0.1, 0, 0, 0]), 160, 120, "kannala_brandt", "cam.yaml"))
    with pytest.raises(InputError, match=r"image: 160x120.*cam\.yaml.*640x480"):
        undistort_image(img, Camera(K, np.zeros(5), 640, 480, "plumb_bob", "cam.yaml"))
    with pytest.raises(InputError, match=r"image: expected \(H, W, 3\) uint8"):
        undistort_image(img.astype(np.float32), Camera(K, np.zeros(5), None, None, "plumb_bob"))


def test_equidistant_point_lands_where_the_formula_puts_it():
    """One bright pixel where the fisheye formula images a known ray; undistortion brings it back to
    the ray's pinhole pixel (hand-derived: theta = atan(0.5) = 0.463648, theta_d = 0.468631)."""
    K = np.array([[200.0, 0.0, 160.0], [0.0, 200.0, 120.0], [0.0, 0.0, 1.0]])
    k = (0.05, 0.0, 0.0, 0.0)
    x, y = 0.4, 0.3  # r = 0.5: pinhole pixel (240, 180)
    theta = np.arctan(0.5)
    theta_d = theta * (1 + 0.05 * theta**2)
    assert theta_d == pytest.approx(0.468631, abs=1e-6)
    ud, vd = 160 + 200 * x * theta_d / 0.5, 120 + 200 * y * theta_d / 0.5  # (234.98, 176.24)
    img = np.zeros((240, 320, 3), np.uint8)
    v, u = np.mgrid[0:240, 0:320]
    img[..., 1] = np.rint(255 * np.exp(-((u - ud) ** 2 + (v - vd) ** 2) / 2.0)).astype(np.uint8)
    out, _ = undistort_image(img, Camera(K, np.array(k), 320, 240, "equidistant"))
    g = out[..., 1].astype(np.float64)
    peak = np.unravel_index(np.argmax(g), g.shape)
    assert peak == (180, 240)
    centroid = (g * u).sum() / g.sum(), (g * v).sum() / g.sum()
    np.testing.assert_allclose(centroid, (240, 180), atol=0.2)


@pytest.mark.parametrize(
    "model, coeffs, expected",
    [
        ("plumb_bob", [-0.2, 0.05, 0.001, 0.002, 0.01], ("plumb_bob", [-0.2, 0.05, 0.001, 0.002, 0.01])),
        ("plumb_bob", [-0.2, 0.05, 0.001, 0.002], ("plumb_bob", [-0.2, 0.05, 0.001, 0.002, 0.0])),
        ("plumb_bob", [-0.2, 0.05, 0.001, 0.002, 0.01] + [0.0] * 9, ("plumb_bob", [-0.2, 0.05, 0.001, 0.002, 0.01])),
        (" Rational_Polynomial ", [0.1] * 8 + [0.0] * 6, ("rational_polynomial", [0.1] * 8)),
        ("equidistant", [0.05, -0.01, 0.002, -0.0005], ("equidistant", [0.05, -0.01, 0.002, -0.0005])),
        ("equidistant", [0.05, -0.01, 0.002, -0.0005, 0.0], ("equidistant", [0.05, -0.01, 0.002, -0.0005])),
        ("kannala_brandt", [0.0] * 14, ("kannala_brandt", [])),  # all zero: nothing to undistort
        ("", [0.1, 0.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.0], ("rational_polynomial", [0.1] + [0.0] * 5 + [0.3, 0.0])),
        ("plumb_bob", [-0.2, 0.05, 0.0, 0.0, 0.0] + [0.0] * 8 + [0.001], r"plumb_bob takes 5 .*got 14.*\[0\.0, 0\.0"),
        ("rational_polynomial", [0.1] * 14, r"rational_polynomial takes 8 .*got 14"),
        ("equidistant", [0.05, 0.0, 0.0, 0.0, 0.01], r"equidistant takes 4 .*got 5"),
        ("kannala_brandt", [0.1, 0.0, 0.0, 0.0], r"'kannala_brandt' with 4 coefficients .*not supported"),
        ("", [0.1] * 14, r"no distortion model given and 14 coefficients"),
        ("plumb_bob", [0.1, float("nan")], "NaN"),
    ],
)
def test_distortion_vector_lengths(tmp_path, model, coeffs, expected):
    """Every length and model: one rule for normalise_distortion, read_camera and undistort_image."""
    K = np.array([[280.0, 0.0, 161.0], [0.0, 282.0, 118.0], [0.0, 0.0, 1.0]])
    img = _distorted_image(K, np.zeros(8), 240, 320)
    fields = {"k": K.reshape(-1).tolist(), "d": coeffs, "width": 320, "height": 240}
    if model:
        fields["distortion_model"] = model
    path = _write(tmp_path / "my_cam.json", json.dumps(fields).replace("NaN", '"nan"'))
    if isinstance(expected, str):
        with pytest.raises(InputError, match=expected) as e:
            normalise_distortion(model, coeffs, "camera_info.d")
        assert str(e.value).startswith("camera_info.d: ")
        if "NaN" not in expected:
            assert "rectified" in str(e.value) or "model" in str(e.value)  # says what to do
        with pytest.raises(InputError, match=r"my_cam\.json: field `d`"):
            read_camera(path)
        with pytest.raises(InputError, match=expected):
            undistort_image(img, Camera(K, np.asarray(coeffs), 320, 240, model, "cam.yaml"))
        return
    name, normalised = normalise_distortion(model, coeffs, "camera_info.d")
    assert name == expected[0]
    np.testing.assert_array_equal(normalised, expected[1])
    cam = read_camera(path)
    assert cam.model == expected[0]
    out, _ = undistort_image(img, cam)
    if not expected[1]:
        assert out is img
    else:  # the same image as with exactly the model's coefficients
        ref, _ = undistort_image(img, Camera(K, np.asarray(expected[1]), 320, 240, expected[0]))
        np.testing.assert_array_equal(out, ref)
        assert not np.array_equal(out, img)


# ------------------------------------------------------------------------------------------------
# pose
# ------------------------------------------------------------------------------------------------
R_Z90 = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # x -> y, y -> -x


def test_quaternion_pose_against_hand_derived_rotation():
    # 90 degrees about z: q = (0, 0, sin 45, cos 45) in ROS order x, y, z, w
    s = np.sqrt(0.5)
    T = read_pose(f"1, 2, 3, 0, 0, {s}, {s}")
    np.testing.assert_allclose(T[:3, :3], R_Z90, atol=1e-12)
    np.testing.assert_allclose(T[:3, 3], [1, 2, 3])
    np.testing.assert_allclose(T[3], [0, 0, 0, 1])
    # an unnormalised quaternion is normalised; spaces work as separators
    np.testing.assert_allclose(read_pose("1 2 3 0 0 2 2"), T, atol=1e-12)


def test_matrix_pose_strings():
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R_Z90, [0.5, -1.0, 1.2]
    np.testing.assert_allclose(read_pose(" ".join(map(str, T.ravel()))), T)
    np.testing.assert_allclose(read_pose(",".join(map(str, T[:3].ravel()))), T)
    np.testing.assert_allclose(read_pose(str(T.tolist())), T)  # "[[...], [...]]"


@pytest.mark.parametrize(
    "text, match",
    [
        ("1, 2, 3, 0, 0, 0, 0", "quaternion.*zero"),
        ("1, 2, 3, 0, 0, 1", "16 numbers.*got 6"),
        ("1, 2, 3, 0, 0, x, 1", "non-number 'x'"),
        ("1 0 0 0 0 2 0 0 0 0 1 0 0 0 0 1", "orthonormal"),
        ("1, 2, 3, nan, 0, 0, 1", "NaN"),
    ],
)
def test_bad_pose_strings(text, match):
    with pytest.raises(InputError, match=match) as e:
        read_pose(text)
    assert "--pose" in str(e.value)


def test_pose_files(tmp_path):
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R_Z90, [0.5, -1.0, 1.2]
    txt = _write(tmp_path / "pose.txt", "# T_map_camera\n" + "\n".join(" ".join(map(str, r)) for r in T))
    np.testing.assert_allclose(read_pose(txt), T)
    np.testing.assert_allclose(read_pose(str(txt)), T)
    np.save(tmp_path / "pose.npy", T[:3])
    np.testing.assert_allclose(read_pose(tmp_path / "pose.npy"), T)
    (tmp_path / "pose.json").write_text(json.dumps({"T_map_camera": T.tolist()}))
    np.testing.assert_allclose(read_pose(tmp_path / "pose.json"), T)
    s = np.sqrt(0.5)
    stamped = ("header: {frame_id: map}\ntransform:\n  translation: {x: 0.5, y: -1.0, z: 1.2}\n"
               f"  rotation: {{x: 0.0, y: 0.0, z: {s}, w: {s}}}\n")
    np.testing.assert_allclose(read_pose(_write(tmp_path / "tf.yaml", stamped)), T, atol=1e-12)
    pose = f"position: [0.5, -1.0, 1.2]\norientation: [0, 0, {s}, {s}]\n"
    np.testing.assert_allclose(read_pose(_write(tmp_path / "p.yml", pose)), T, atol=1e-12)


def test_bad_pose_files_name_the_file(tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((2, 2)))
    with pytest.raises(InputError, match=r"bad\.npy: T_map_camera: expected a numeric array of shape"):
        read_pose(tmp_path / "bad.npy")
    with pytest.raises(InputError, match=r"nope\.txt: pose file not found"):
        read_pose(str(tmp_path / "nope.txt"))
    with pytest.raises(InputError, match=r"tf\.yaml: T_map_camera: field `rotation`: missing w"):
        read_pose(_write(tmp_path / "tf.yaml", "translation: [0, 0, 0]\nrotation: {x: 0, y: 0, z: 0}\n"))
    with pytest.raises(InputError, match=r"q\.yaml.*quaternion.*zero"):
        read_pose(_write(tmp_path / "q.yaml", "position: [0, 0, 0]\norientation: [0, 0, 0, 0]\n"))
    with pytest.raises(InputError, match=r"m\.txt: T_map_camera: rotation block is not orthonormal"):
        read_pose(_write(tmp_path / "m.txt", "2 0 0 0\n0 1 0 0\n0 0 1 0\n0 0 0 1\n"))
    with pytest.raises(InputError, match=r"k\.json: T_map_camera: expected a 4x4 list or a mapping"):
        read_pose(_write(tmp_path / "k.json", '{"rot": 1}'))


# ------------------------------------------------------------------------------------------------
# point clouds
# ------------------------------------------------------------------------------------------------
def _cloud(n=50, seed=0):
    return np.random.default_rng(seed).uniform(-3, 3, (n, 3))


@pytest.mark.parametrize("encoding", ["binary", "ascii"])
def test_ply_written_by_trimesh(tmp_path, encoding):
    mesh = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    mesh.visual.vertex_colors = np.tile([10, 20, 30, 255], (len(mesh.vertices), 1)).astype(np.uint8)
    path = tmp_path / f"box_{encoding}.ply"
    path.write_bytes(mesh.export(file_type="ply", encoding=encoding))
    points = read_point_cloud(path)
    np.testing.assert_allclose(points, mesh.vertices, atol=1e-6)
    pc = trimesh.PointCloud(_cloud())
    path = tmp_path / f"cloud_{encoding}.ply"
    path.write_bytes(pc.export(file_type="ply", encoding=encoding))
    np.testing.assert_allclose(read_point_cloud(path), pc.vertices, atol=1e-6)


def _ply_bytes(fmt, endian, points, with_faces=False):
    """Hand-made PLY: an element before `vertex`, double x y z mixed with other properties."""
    header = [
        "ply", f"format {fmt} 1.0", "comment hand made", "element camera 1", "property float view_x",
        "property list uchar int tags", f"element vertex {len(points)}", "property uchar red",
        "property double x", "property double y", "property float intensity", "property double z",
    ]
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    if with_faces:
        header += ["element face 2", "property list uchar int vertex_indices"]
    header = ("\n".join(header + ["end_header"]) + "\n").encode()
    if fmt == "ascii":
        body = "1.5 2 7 8\n" + "".join(f"3 {x!r} {y!r} 0.5 {z!r}\n" for x, y, z in points.tolist())
        if with_faces:
            body += "".join(f"3 {a} {b} {c}\n" for a, b, c in faces.tolist())
        return header + body.encode()
    e = endian
    body = struct.pack(f"{e}fBii", 1.5, 2, 7, 8)
    for x, y, z in points:
        body += struct.pack(f"{e}Bddfd", 3, x, y, 0.5, z)
    if with_faces:
        for f in faces:
            body += struct.pack(f"{e}Biii", 3, *f)
    return header + body


@pytest.mark.parametrize("fmt, endian", [("ascii", ""), ("binary_little_endian", "<"), ("binary_big_endian", ">")])
def test_hand_made_ply_all_encodings(tmp_path, fmt, endian):
    points = _cloud(20)
    points[3] = [np.nan, 0.0, np.inf]  # kept: the Scene drops and counts them
    path = tmp_path / "room.ply"
    path.write_bytes(_ply_bytes(fmt, endian, points))
    np.testing.assert_array_equal(read_point_cloud(path), points)


@pytest.mark.parametrize("fmt, endian", [("ascii", ""), ("binary_big_endian", ">")])
def test_ply_mesh_surface_sampling(tmp_path, fmt, endian):
    square = np.array([[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]])  # 1 m^2, two triangles
    path = tmp_path / "floor.ply"
    path.write_bytes(_ply_bytes(fmt, endian, square, with_faces=True))
    np.testing.assert_array_equal(read_point_cloud(path), square)
    dense = read_point_cloud(path, sample_mesh_surface=True)
    assert len(dense) == 4 + 2500  # one per (2 cm)^2
    assert np.all((dense[:, :2] >= 0) & (dense[:, :2] <= 1)) and np.all(dense[:, 2] == 0)
    np.testing.assert_array_equal(dense, read_point_cloud(path, sample_mesh_surface=True))  # seeded
    # spread over the whole square: every 10 cm cell is hit
    cells = np.unique(np.floor(dense[:, :2] / 0.1).clip(0, 9).astype(int), axis=0)
    assert len(cells) == 100


@pytest.mark.parametrize("fmt, endian", [("ascii", ""), ("binary_little_endian", "<")])
def test_ply_mixed_polygons(tmp_path, fmt, endian):
    """A quad and a triangle in one face element: the row-by-row path, fan triangulation."""
    square = [[0.0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]]
    header = ("ply\nformat %s 1.0\nelement vertex 4\nproperty float x\nproperty float y\nproperty float z\n"
              "element face 2\nproperty list uchar int vertex_indices\nproperty uchar flags\nend_header\n" % fmt)
    if fmt == "ascii":
        body = "".join("%g %g %g\n" % tuple(p) for p in square) + "4 0 1 2 3 9\n3 0 1 2 9\n"
        data = header.encode() + body.encode()
    else:
        data = header.encode() + struct.pack("<12f", *np.ravel(square))
        data += struct.pack("<B4iB", 4, 0, 1, 2, 3, 9) + struct.pack("<B3iB", 3, 0, 1, 2, 9)
    (tmp_path / "m.ply").write_bytes(data)
    dense = read_point_cloud(tmp_path / "m.ply", sample_mesh_surface=True)
    assert len(dense) == 4 + 3750  # areas 1 + 0.5 m^2
    assert np.all((dense[:, :2] >= 0) & (dense[:, :2] <= 1)) and np.all(dense[:, 2] == 0)


def test_bad_ply_names_file_and_field(tmp_path):
    good = _ply_bytes("binary_little_endian", "<", _cloud(5))
    cases = {
        "noz.ply": (good.replace(b"property double z", b"property double w"), "property z missing"),
        "trunc.ply": (good[:-10], "file ends inside element `vertex`"),
        "fmt.ply": (good.replace(b"binary_little_endian", b"binary_middle_endian"), "`format`"),
        "type.ply": (good.replace(b"property double y", b"property quad y"), "malformed PLY header line"),
        "empty.ply": (b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nproperty float y\n"
                      b"property float z\nend_header\n", "empty"),
        "noheader.ply": (b"ply\nformat ascii 1.0\n", "end_header"),
        "asc.ply": (_ply_bytes("ascii", "", _cloud(5)).replace(b" 0.5 ", b" 0.5 x "), "rows do not match"),
        "neg.ply": (good.replace(b"element vertex 5", b"element vertex -1"), "'element vertex -1'.*>= 0"),
        "nega.ply": (_ply_bytes("ascii", "", _cloud(5)).replace(b"element vertex 5", b"element vertex -1"),
                     "'element vertex -1'.*>= 0"),
    }
    for name, (data, match) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=match) as e:
            read_point_cloud(tmp_path / name)
        assert name in str(e.value)


def _pcd_header(n, data, fields="x y z _ intensity _", size="4 4 4 1 4 1", type_="F F F U F U",
                count="1 1 1 4 1 2"):
    return (f"# .PCD v0.7 - Point Cloud Data file format\nVERSION 0.7\nFIELDS {fields}\nSIZE {size}\n"
            f"TYPE {type_}\nCOUNT {count}\nWIDTH {n}\nHEIGHT 1\nVIEWPOINT 0 0 0 1 0 0 0\nPOINTS {n}\n"
            f"DATA {data}\n").encode()


def test_pcd_binary_and_ascii(tmp_path):
    points = _cloud(30).astype(np.float32)
    points[2, 0] = np.nan
    body = b"".join(struct.pack("<fff4Bf2B", *p, 1, 2, 3, 4, 0.25, 0, 0) for p in points)
    (tmp_path / "b.pcd").write_bytes(_pcd_header(len(points), "binary") + body)
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "b.pcd"), points.astype(np.float64))

    rgb = "4.2108e+06"
    lines = "".join(f"{x!r} {y!r} {z!r} {rgb}\n" for x, y, z in points.astype(np.float64).tolist())
    header = _pcd_header(len(points), "ascii", fields="x y z rgb", size="4 4 4 4", type_="F F F F", count="1 1 1 1")
    (tmp_path / "a.pcd").write_bytes(header + lines.encode())
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "a.pcd"), points.astype(np.float64))

    # double precision, fields in another order
    header = _pcd_header(2, "binary", fields="intensity z y x", size="4 8 8 8", type_="F F F F", count="1 1 1 1")
    (tmp_path / "d.pcd").write_bytes(header + struct.pack("<fddd", 1, 3, 2, 1) + struct.pack("<fddd", 1, 6, 5, 4))
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "d.pcd"), [[1, 2, 3], [4, 5, 6]])


def test_bad_pcd_names_file_and_field(tmp_path):
    cases = {
        "c.pcd": (_pcd_header(3, "binary_compressed") + b"\0" * 40, "binary_compressed.*binary or ascii"),
        "nox.pcd": (_pcd_header(1, "ascii", fields="a y z", size="4 4 4", type_="F F F", count="1 1 1")
                    + b"1 2 3\n", "`FIELDS`: x missing"),
        "short.pcd": (_pcd_header(3, "binary") + b"\0" * 20, "shorter than POINTS=3"),
        "size.pcd": (_pcd_header(1, "ascii", size="4 4 4 1 4"), "`SIZE`: 5 entries for 6 FIELDS"),
        "asc.pcd": (_pcd_header(2, "ascii", fields="x y z", size="4 4 4", type_="F F F", count="1 1 1")
                    + b"1 2 3\n4 5\n", "has 5 values, expected POINTS=2 x 3"),
        "nodata.pcd": (b"VERSION 0.7\nFIELDS x y z\n", "no `DATA` line"),
        "neg.pcd": (_pcd_header(1, "binary").replace(b"POINTS 1", b"POINTS -1") + b"\0" * 40,
                    "`POINTS`: -1 is negative"),
        "nega.pcd": (_pcd_header(1, "ascii", fields="x y z", size="4 4 4", type_="F F F", count="1 1 1")
                     .replace(b"POINTS 1", b"POINTS -1") + b"1 2 3\n", "`POINTS`: -1 is negative"),
    }
    for name, (data, match) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(InputError, match=match) as e:
            read_point_cloud(tmp_path / name)
        assert name in str(e.value)


def test_numpy_and_obj_clouds(tmp_path):
    points = _cloud()
    np.save(tmp_path / "p.npy", points.astype(np.float32))
    np.testing.assert_allclose(read_point_cloud(tmp_path / "p.npy"), points, atol=1e-6)
    np.savez(tmp_path / "p.npz", points=points, colors=np.zeros((50, 3)))
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "p.npz"), points)
    np.savez(tmp_path / "q.npz", xyz=points, stamp=np.zeros(2))
    np.testing.assert_array_equal(read_point_cloud(tmp_path / "q.npz"), points)

    mesh = trimesh.creation.box(extents=(1.0, 1.0, 1.0))
    (tmp_path / "box.obj").write_text(mesh.export(file_type="obj"))
    np.testing.assert_allclose(read_point_cloud(tmp_path / "box.obj"), mesh.vertices, atol=1e-6)
    dense = read_point_cloud(tmp_path / "box.obj", sample_mesh_surface=True)
    assert len(dense) == 8 + 6 * 2500 and np.abs(dense).max() <= 0.5 + 1e-9
    on_face = np.isclose(np.abs(dense), 0.5).any(axis=1)
    assert on_face.all()


def test_bad_numpy_and_other_clouds(tmp_path):
    np.save(tmp_path / "p4.npy", np.zeros((5, 4)))
    np.savez(tmp_path / "two.npz", a=np.zeros((5, 3)), b=np.ones((6, 3)))
    np.savez(tmp_path / "empty.npz", points=np.zeros((0, 3)))
    (tmp_path / "cloud.xyz").write_text("1 2 3\n")
    (tmp_path / "bad.obj").write_text("v 1 2\n")
    cases = {
        "p4.npy": r"array: expected a numeric \(N, 3\) array, got shape \(5, 4\)",
        "two.npz": r"field `points` missing and 2 arrays",
        "empty.npz": "empty",
        "cloud.xyz": "unsupported point cloud format '.xyz'",
        "bad.obj": "line 1: expected `v x y z`",
        "absent.ply": "point cloud file not found",
    }
    for name, match in cases.items():
        with pytest.raises(InputError, match=match) as e:
            read_point_cloud(tmp_path / name)
        assert name in str(e.value)


def _npy_claiming(shape, payload=b"\0" * 72):
    """A .npy whose header claims ``shape`` float64, followed by ``payload``."""
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    return buf.getvalue() + payload


def test_numpy_files_that_would_unpickle_or_over_allocate(tmp_path, monkeypatch):
    """Empty files, object arrays (never unpickled) and headers claiming more than the file holds
    are refused naming the file, before numpy allocates what the header claims."""
    import zipfile

    (tmp_path / "zero.npy").write_bytes(b"")
    (tmp_path / "zero.npz").write_bytes(b"")
    np.savez(tmp_path / "objects.npz", points=np.array([[1.0, "a", None]], dtype=object))
    np.save(tmp_path / "objects.npy", np.array([[1.0, 2.0, None]], dtype=object), allow_pickle=True)
    (tmp_path / "huge.npy").write_bytes(_npy_claiming((10**9, 3)))
    with zipfile.ZipFile(tmp_path / "huge.npz", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("points.npy", _npy_claiming((10**9, 3)))
    cases = {
        "zero.npy": "the file is empty",
        "zero.npz": "the file is empty",
        "objects.npz": "member 'points.npy': holds an object array .*never unpickled",
        "objects.npy": "holds an object array .*never unpickled",
        "huge.npy": r"claims shape \(1000000000, 3\) float64 \(24000000000 bytes\) but only 200 bytes",
        "huge.npz": r"member 'points.npy': the header claims shape \(1000000000, 3\)",
    }
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    for name, match in cases.items():
        with pytest.raises(InputError, match=match) as e:
            read_point_cloud(tmp_path / name)
        assert name in str(e.value)
    assert loads == []  # refused from the header, before np.load
    with pytest.raises(InputError, match="zero.npy: the file is empty"):
        read_pose(tmp_path / "zero.npy")
    with pytest.raises(InputError, match="huge.npy: the header claims"):
        read_pose(tmp_path / "huge.npy")
    np.save(tmp_path / "pose.npy", np.eye(4))
    np.testing.assert_array_equal(read_pose(tmp_path / "pose.npy"), np.eye(4))


# ------------------------------------------------------------------------------------------------
# image
# ------------------------------------------------------------------------------------------------
def _png_header(width, height):
    """A PNG that is only a header claiming ``width`` x ``height`` (nothing to decode)."""
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height, match", [
    (12000, 12000, "12000x12000 = 144000000 pixels exceeds the limit of 40000000"),
    (20000, 20000, "exceeds the limit of 40000000 pixels .*decompression bomb"),  # Pillow refuses at open
])
def test_image_over_the_pixel_limit_is_refused_from_its_header(tmp_path, width, height, match):
    path = tmp_path / "big.png"
    path.write_bytes(_png_header(width, height))
    with pytest.raises(InputError, match=match) as e:
        read_image(path)
    assert str(e.value).startswith(str(path)) and "MAX_IMAGE_PIXELS" in str(e.value)
    path.write_bytes(_png_header(7680, 4320))  # 8K passes the size check (and then has no pixel data)
    with pytest.raises(InputError, match="not a readable image"):
        read_image(path)


# ------------------------------------------------------------------------------------------------
# boxes
# ------------------------------------------------------------------------------------------------
def test_boxes():
    boxes = read_boxes(["10,20,110,220", "5 6 7 8", "[1.5, 2, 30, 40]", "120,20,110,220"])
    np.testing.assert_array_equal(boxes, [[10, 20, 110, 220], [5, 6, 7, 8], [1.5, 2, 30, 40], [120, 20, 110, 220]])
    assert read_boxes([]).shape == (0, 4)
    with pytest.raises(InputError, match=r"--box #2 \('1,2,3'\): expected 4 numbers x1,y1,x2,y2 in pixels, got 3"):
        read_boxes(["1,2,3,4", "1,2,3"])
    with pytest.raises(InputError, match=r"--box #1 \('1,2,3,a'\).*non-number 'a'"):
        read_boxes(["1,2,3,a"])


# ------------------------------------------------------------------------------------------------
# writers
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_write_mesh_round_trip(tmp_path, suffix):
    mesh = trimesh.creation.icosphere(subdivisions=2)
    path = write_mesh(tmp_path / f"person{suffix}", mesh.vertices, mesh.faces)
    loaded = trimesh.load(path, process=False, force="mesh")
    np.testing.assert_allclose(loaded.vertices, mesh.vertices, atol=1e-5)
    np.testing.assert_array_equal(loaded.faces, mesh.faces)
    np.testing.assert_allclose(read_point_cloud(path), mesh.vertices, atol=1e-5)
    dense = read_point_cloud(path, sample_mesh_surface=True)
    assert len(dense) > len(mesh.vertices) and np.abs(np.linalg.norm(dense, axis=1) - 1).max() < 0.1


def test_write_mesh_refuses_bad_input(tmp_path):
    with pytest.raises(InputError, match="faces: expected integer indices in 0..2"):
        write_mesh(tmp_path / "m.ply", np.zeros((3, 3)), np.array([[0, 1, 3]]))
    with pytest.raises(InputError, match=r"vertices: expected shape \(N, 3\)"):
        write_mesh(tmp_path / "m.ply", np.zeros((3, 2)), np.array([[0, 1, 2]]))
    with pytest.raises(InputError, match="must be .ply or .obj"):
        write_mesh(tmp_path / "m.stl", np.zeros((3, 3)), np.array([[0, 1, 2]]))


def test_labelled_points_ply_layout(tmp_path):
    points = _cloud(40)
    labels = np.arange(40) % 9  # 8 is outside the palette: grey
    path = write_labelled_points_ply(tmp_path / "contacts.ply", points, labels)
    np.testing.assert_allclose(read_point_cloud(path), points.astype(np.float32))
    # independent parse: header text, then a fixed record layout
    data = path.read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    header = data[:end].decode().splitlines()
    assert header[:2] == ["ply", "format binary_little_endian 1.0"]
    props = [line.split()[1:] for line in header if line.startswith("property")]
    assert props == [["float", "x"], ["float", "y"], ["float", "z"], ["int", "label"],
                     ["uchar", "red"], ["uchar", "green"], ["uchar", "blue"]]
    rec = np.frombuffer(data[end:], dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<i4"),
                                           ("r", "u1"), ("g", "u1"), ("b", "u1")])
    assert len(rec) == 40 and len(data) - end == 40 * 19
    np.testing.assert_allclose(np.stack([rec["x"], rec["y"], rec["z"]], 1), points, atol=1e-6)
    np.testing.assert_array_equal(rec["label"], labels)
    rgb = np.stack([rec["r"], rec["g"], rec["b"]], 1)
    np.testing.assert_array_equal(rgb[labels == 2], np.tile(C.CONTACT_PART_COLORS[2], (np.sum(labels == 2), 1)))
    np.testing.assert_array_equal(rgb[labels == 8], 128)
    # explicit colours, and trimesh agrees on the vertex layout
    colors = np.random.default_rng(1).integers(0, 256, (40, 3), dtype=np.uint8)
    path = write_labelled_points_ply(tmp_path / "c2.ply", points, labels, colors)
    pc = trimesh.load(path, process=False)
    np.testing.assert_allclose(pc.vertices, points, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pc.colors)[:, :3], colors)


def test_labelled_points_refuses_bad_input(tmp_path):
    with pytest.raises(InputError, match=r"labels: expected \(3,\) integers"):
        write_labelled_points_ply(tmp_path / "x.ply", np.zeros((3, 3)), np.array([0.5, 1, 2]))
    with pytest.raises(InputError, match=r"colors: expected \(3, 3\) uint8"):
        write_labelled_points_ply(tmp_path / "x.ply", np.zeros((3, 3)), np.arange(3), np.zeros((3, 3)))
