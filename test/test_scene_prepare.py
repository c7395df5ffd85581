"""`sahmr scene prepare`: every map format round trips into the scene the pipeline loads; bad input is refused.

Inputs are written by independent writers (trimesh, Open3D, laspy, pye57); the expectation is computed
here from the points as written (voxel means by ``np.unique``, box distances in closed form), never by
the code under test.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import trimesh

from sahmr_ros.cli import main
from sahmr_ros.geometry import voxel_downsample
from sahmr_ros.io import read_point_cloud
from sahmr_ros.maps.prepare import fixed_point_voxels, statistical_outliers
from sahmr_ros.scene import Scene

PITCH = 0.02


def _room_points(seed=0, n=40_000):
    """A floor and two walls (3 x 2 m, 1.5 m high), noisy: what a scan of a room corner holds."""
    rng = np.random.default_rng(seed)
    u, v = rng.random((2, n))
    floor = np.stack([3 * u, 2 * v, np.zeros(n)], 1)
    wall_x = np.stack([np.zeros(n), 2 * u, 1.5 * v], 1)
    wall_y = np.stack([3 * u, np.full(n, 2.0), 1.5 * v], 1)
    return np.concatenate([floor, wall_x, wall_y]) + rng.normal(0, 0.003, (3 * n, 3))


def _naive_voxel_means(points, pitch=PITCH):
    """(M, 3) float64 means per voxel, voxels in lexicographic order: the Scene's voxelisation by np.unique."""
    keys, inverse = np.unique(np.floor(points / pitch).astype(np.int64), axis=0, return_inverse=True)
    sums = np.zeros((len(keys), 3))
    np.add.at(sums, inverse.reshape(-1), points)
    return sums / np.bincount(inverse.reshape(-1))[:, None]


def _prepare(capsys, *args):
    code = main(["scene", "prepare", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _load(path):
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _assert_loads_as_prepared(path, expected_points):
    """The scene reader returns the stored cloud; the Scene and the scene publisher's voxelisation keep it."""
    points = read_point_cloud(path)
    assert points.dtype == np.float64
    assert points.shape == expected_points.shape
    np.testing.assert_allclose(points, expected_points, atol=2e-6)  # float32 storage (+ a nudge of an ulp or two)
    stored = points.astype(np.float32)
    np.testing.assert_array_equal(Scene(points).points_map, stored)  # fixed point of the pipeline's voxelisation
    np.testing.assert_array_equal(voxel_downsample(points, PITCH), stored)  # and of sahmr_scene_publisher's


# ------------------------------------------------------------------------------------------------
# the steps, against naive references
# ------------------------------------------------------------------------------------------------
def test_voxels_are_the_scene_voxelisation_and_its_fixed_point():
    rng = np.random.default_rng(3)
    points = np.concatenate([
        rng.uniform(-3, 3, (20_000, 3)),
        # means a float32 rounding puts on the next voxel's face: far from the origin, just below a face
        (rng.integers(-10**6, 10**6, (5_000, 1)) * PITCH + np.array([-1e-9, -3e-9, -1e-8])) * np.ones((1, 3)),
    ])
    naive = _naive_voxel_means(points)
    crossing = (np.floor(naive.astype(np.float32).astype(np.float64) / PITCH) != np.floor(naive / PITCH)).any(1)
    assert crossing.sum() > 100  # the case the nudge exists for is exercised
    out = fixed_point_voxels(points, PITCH)
    assert out.dtype == np.float32 and len(out) == len(naive)
    np.testing.assert_array_equal(np.floor(out.astype(np.float64) / PITCH), np.floor(naive / PITCH))
    spacing = np.spacing(np.abs(naive).astype(np.float32)).astype(np.float64)
    assert (np.abs(out - naive) <= 4 * spacing).all()  # at most a few ulps from the true mean
    np.testing.assert_array_equal(Scene(out.astype(np.float64)).points_map, out)
    np.testing.assert_array_equal(Scene(out).points_map, out)  # from float32 too (a PointCloud2's)
    # what Scene keeps of the raw points is the same cloud up to those ulps
    np.testing.assert_allclose(Scene(points).points_map, out, atol=0, rtol=1e-6)


def test_statistical_outliers_against_a_naive_reference():
    rng = np.random.default_rng(0)
    grid = np.stack(np.meshgrid(np.arange(40), np.arange(30), [0], indexing="ij"), -1).reshape(-1, 3) * PITCH
    leg = np.stack([np.full(25, 0.3), np.full(25, 0.3), np.arange(1, 26) * PITCH], 1)  # 1 voxel wide
    specks = rng.uniform(-2, 2, (6, 3)) + np.array([0, 0, 3.0])
    cloud = np.concatenate([grid, leg, specks])
    flagged = statistical_outliers(cloud, PITCH)
    d = np.sort(np.linalg.norm(cloud[:, None] - cloud[None], axis=-1), axis=1)[:, 1:9].mean(1)
    naive = d > max(d.mean() + 3 * d.std(), 3 * PITCH)
    np.testing.assert_array_equal(flagged, naive)
    assert flagged[-6:].all() and not flagged[:-6].any()  # the specks only: edges, corners and the leg stay


# ------------------------------------------------------------------------------------------------
# clouds: PLY, PCD (ascii, binary, binary_compressed), LAS, LAZ, E57
# ------------------------------------------------------------------------------------------------
def _write_cloud(path, points):
    suffix = path.suffix
    if suffix == ".ply":
        path.write_bytes(trimesh.PointCloud(points).export(file_type="ply"))
        return points
    if suffix == ".pcd":
        import open3d as o3d

        mode = path.stem
        o3d.io.write_point_cloud(str(path), o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points)),
                                 write_ascii=mode == "ascii", compressed=mode == "compressed")
        assert f"DATA {'binary_compressed' if mode == 'compressed' else mode}".encode() in path.read_bytes()[:400]
        return points.astype(np.float32).astype(np.float64)  # Open3D writes float32 fields
    if suffix in (".las", ".laz"):
        laspy = pytest.importorskip("laspy")
        if suffix == ".laz":
            pytest.importorskip("lazrs")
        header = laspy.LasHeader(point_format=3, version="1.4")
        header.scales, header.offsets = np.array([0.001] * 3), np.array([100.0, 200.0, 0.0])
        las = laspy.LasData(header)
        las.x, las.y, las.z = (points + [100.0, 200.0, 0.0]).T
        las.write(str(path))
        return np.round(points / 0.001) * 0.001  # the file's millimetre integers (offset added back below)
    if suffix == ".e57":
        pye57 = pytest.importorskip("pye57")
        invalid = ~np.isfinite(points).all(1)  # E57 marks missing returns invalid (its writer refuses NaN)
        xyz = np.where(invalid[:, None], 0.0, points)
        with pye57.E57(str(path), mode="w") as e57:
            e57.write_scan_raw({"cartesianX": xyz[:, 0], "cartesianY": xyz[:, 1], "cartesianZ": xyz[:, 2],
                                "cartesianInvalidState": invalid.astype(np.int8)})
        return points[~invalid]
    raise AssertionError(suffix)


@pytest.mark.parametrize("name", ["room.ply", "ascii.pcd", "binary.pcd", "compressed.pcd", "room.las", "room.laz",
                                  "room.e57"])
def test_clouds_round_trip(tmp_path, capsys, name):
    if name == "compressed.pcd":
        pytest.importorskip("pypcd4")
    points = _room_points()
    points[::997] = np.nan  # scanners write NaN for missing returns
    path = tmp_path / name
    written = _write_cloud(path, np.nan_to_num(points, nan=0.0) if path.suffix in (".las", ".laz") else points)
    offset = np.array([100.0, 200.0, 0.0]) if path.suffix in (".las", ".laz") else np.zeros(3)
    out = tmp_path / "scene.npz"
    code, stdout, err = _prepare(capsys, path, "-o", out, "--keep-outliers",
                                 "--transform", f"{-offset[0]} {-offset[1]} 0 0 0 0 1")
    assert code == 0, err
    finite = written[np.isfinite(written).all(1)]
    expected = _naive_voxel_means(finite + offset - offset)  # the transform takes the LAS offset back out
    _assert_loads_as_prepared(out, expected)
    stored = _load(out)
    meta = json.loads(str(stored["metadata_json"]))
    prov = meta["extra"]
    assert prov["input"]["file"] == name and prov["input"]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert prov["counts"]["non_finite"] == len(written) - len(finite) and prov["counts"]["points"] == len(expected)
    assert prov["tool"] == "sahmr scene prepare"
    assert prov["sdf"]["kind"] == "none" and "no inside" in prov["sdf"]["note"]
    assert stored["cloud"].dtype == np.float32 and "sdf_values" not in stored
    assert f"-> {len(expected)} points" in stdout


def test_cloud_transform_crop_outliers_and_unsigned_sdf(tmp_path, capsys):
    points = _room_points(1)
    specks = np.array([[0.7, 1.5, 0.6], [1.2, 0.8, 1.1], [0.4, 0.6, 1.3]])  # lone returns inside the box
    path = tmp_path / "scan.ply"
    path.write_bytes(trimesh.PointCloud(np.concatenate([points, specks])).export(file_type="ply"))
    T = np.eye(4)
    T[:3, :3] = trimesh.transformations.rotation_matrix(np.pi / 2, [0, 0, 1])[:3, :3]
    T[:3, 3] = [10.0, -5.0, 0.25]
    np.savetxt(tmp_path / "T.txt", T)
    out = tmp_path / "scene.npz"
    code, _, err = _prepare(capsys, path, "--transform", tmp_path / "T.txt", "--crop=7.5,-5,0,10.5,-3.5,1.75",
                            "--sdf", "unsigned", "--sdf-spacing", "0.1", "-o", out)
    assert code == 0, err
    mapped = np.concatenate([points, specks]) @ T[:3, :3].T + T[:3, 3]
    inside = ((mapped >= [7.5, -5, 0]) & (mapped <= [10.5, -3.5, 1.75])).all(1)
    kept = mapped[inside[:len(points)].nonzero()[0]]  # the room's points in the box; the specks are removed
    _assert_loads_as_prepared(out, _naive_voxel_means(kept))
    prov = json.loads(str(_load(out)["metadata_json"]))["extra"]
    assert prov["counts"]["outliers"] == 3 and prov["counts"]["outside_crop"] == int((~inside).sum())
    np.testing.assert_allclose(prov["transform_map_input"], T)
    assert prov["crop_map"] == {"min": [7.5, -5.0, 0.0], "max": [10.5, -3.5, 1.75]}
    from sahmr_ros.data.sample import Scene as StoredScene
    from scipy.spatial import cKDTree

    sdf = StoredScene.from_arrays(_load(out)).sdf
    assert prov["sdf"]["kind"] == "unsigned" and np.isclose(sdf.spacing, 0.1).all()
    nodes = sdf.node_positions().reshape(-1, 3)
    np.testing.assert_allclose(sdf.values.reshape(-1), cKDTree(read_point_cloud(out)).query(nodes)[0], atol=1e-6)


# ------------------------------------------------------------------------------------------------
# meshes: OBJ, PLY, GLB, GLTF; signed distance from a watertight mesh
# ------------------------------------------------------------------------------------------------
BOX_CENTRE, BOX_EXTENTS = np.array([0.51, 0.31, 0.21]), np.array([1.0, 0.6, 0.4])  # faces at voxel centres


def _box_sdf(p):
    q = np.abs(p - BOX_CENTRE) - BOX_EXTENTS / 2
    return np.linalg.norm(np.maximum(q, 0), axis=-1) + np.minimum(q.max(-1), 0)


def _dense_surface_voxels(step=0.001):
    """Voxels of the box surface, from a regular 1 mm grid on each face (independent of any sampler)."""
    lo, hi = BOX_CENTRE - BOX_EXTENTS / 2, BOX_CENTRE + BOX_EXTENTS / 2
    keys = set()
    for axis in range(3):
        a, b = [k for k in range(3) if k != axis]
        ga, gb = np.meshgrid(np.arange(lo[a], hi[a] + step / 2, step), np.arange(lo[b], hi[b] + step / 2, step))
        for side in (lo[axis], hi[axis]):
            p = np.zeros((ga.size, 3))
            p[:, a], p[:, b], p[:, axis] = ga.ravel(), gb.ravel(), side
            keys |= set(map(tuple, np.floor(p / PITCH).astype(np.int64)))
    return keys


def _write_mesh(path, mesh):
    if path.suffix == ".gltf":
        for name, data in mesh.export(file_type="gltf").items():
            (path.parent / name).write_bytes(data)
        (path.parent / "model.gltf").rename(path)
    else:
        path.write_bytes(mesh.export(file_type=path.suffix.lstrip(".")) if path.suffix != ".obj"
                         else mesh.export(file_type="obj").encode())


@pytest.mark.parametrize("name", ["box.obj", "box.ply", "box.glb", "box.gltf"])
def test_meshes_round_trip_with_a_signed_distance(tmp_path, capsys, name):
    box = trimesh.creation.box(extents=BOX_EXTENTS)
    if name.endswith((".glb", ".gltf")):  # the box's placement lives in the scene graph's node transform
        mesh = trimesh.Scene()
        mesh.add_geometry(box, transform=trimesh.transformations.translation_matrix(BOX_CENTRE))
    else:
        mesh = box.copy()
        mesh.apply_translation(BOX_CENTRE)
    path = tmp_path / name
    _write_mesh(path, mesh)
    out = tmp_path / "scene.npz"
    code, stdout, err = _prepare(capsys, path, "-o", out)
    assert code == 0, err
    points = read_point_cloud(out)
    _assert_loads_as_prepared(out, points)
    assert np.abs(_box_sdf(points)).max() <= PITCH * np.sqrt(2)  # voxel means on or next to the surface
    got = set(map(tuple, np.floor(points / PITCH).astype(np.int64)))
    dense = _dense_surface_voxels()
    assert got <= dense and len(got) >= 0.999 * len(dense)  # 9 samples per voxel face: ~e^-9 left empty
    from sahmr_ros.data.sample import Scene as StoredScene

    sdf = StoredScene.from_arrays(_load(out)).sdf
    nodes = sdf.node_positions()
    np.testing.assert_allclose(sdf.values, _box_sdf(nodes), atol=1e-5)  # signed: negative inside the box
    prov = json.loads(str(_load(out)["metadata_json"]))["extra"]
    assert prov["input"]["mesh"] and prov["sdf"]["kind"] == "signed" and prov["counts"]["input_faces"] == 12
    assert "SDF: signed" in stdout


def test_open_mesh_gets_no_signed_distance_unless_asked_and_then_is_refused(tmp_path, capsys):
    box = trimesh.creation.box(extents=BOX_EXTENTS)
    box.update_faces(np.arange(len(box.faces)) != 0)  # one triangle missing: not watertight
    path = tmp_path / "open.ply"
    path.write_bytes(box.export(file_type="ply"))
    code, stdout, err = _prepare(capsys, path, "-o", tmp_path / "a.npz")
    assert code == 0, err
    assert "SDF: none (no signed distance: 3 edges are not shared by exactly two triangles" in stdout
    code, _, err = _prepare(capsys, path, "--sdf", "signed", "-o", tmp_path / "b.npz")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "open.ply: --sdf signed needs a watertight mesh, but 3 edges" in err and "--sdf unsigned" in err


# ------------------------------------------------------------------------------------------------
# refusals: one line naming the file or option and the fix, exit status 2, nothing written
# ------------------------------------------------------------------------------------------------
def test_bad_input_is_refused_in_one_line(tmp_path, capsys):
    good = tmp_path / "room.ply"
    good.write_bytes(trimesh.PointCloud(_room_points(n=2000)).export(file_type="ply"))
    (tmp_path / "trunc.ply").write_bytes(good.read_bytes()[:-100])
    (tmp_path / "room.xyz").write_text("1 2 3\n")
    (tmp_path / "bad.obj").write_text("v 1 2\n")
    (tmp_path / "bad.las").write_bytes(b"LASF" + b"\0" * 50)
    (tmp_path / "bad.pcd").write_bytes(b"VERSION 0.7\nFIELDS x y z\nSIZE 4 4 4\nTYPE F F F\nPOINTS 5\nDATA binary\n1")
    (tmp_path / "a_file").write_text("")
    out = str(tmp_path / "scene.npz")
    room = str(good)
    cases = [
        ([str(tmp_path / "absent.ply"), "-o", out], "absent.ply: map file not found"),
        ([str(tmp_path / "room.xyz"), "-o", out], "room.xyz: unsupported map format '.xyz'; expected one of .ply"),
        ([str(tmp_path / "trunc.ply"), "-o", out], "trunc.ply: file ends inside element `vertex`"),
        ([str(tmp_path / "bad.obj"), "-o", out], "bad.obj: line 1: expected `v x y z`"),
        ([str(tmp_path / "bad.las"), "-o", out], "bad.las: not a readable LAS/LAZ file"),
        ([str(tmp_path / "bad.pcd"), "-o", out], "bad.pcd: PCD binary data is shorter than POINTS=5"),
        ([room, "-o", out, "--crop", "1,2,3"], "--crop: expected 6 finite numbers"),
        ([room, "-o", out, "--crop", "0,0,0,1,1,0"], "--crop: each max must exceed its min"),
        ([room, "-o", out, "--crop=50,50,50,51,51,51"], "room.ply: no point left after dropping"),
        ([room, "-o", out, "--transform", "2 0 0 0 0 2 0 0 0 0 2 0 0 0 0 1"],
         "--transform: rotation block is not orthonormal"),
        ([room, "-o", out, "--transform", "1 2 3 0 0 0 0"], "--transform: quaternion"),
        ([room, "-o", out, "--sdf", "signed"], "room.ply: --sdf signed needs a watertight mesh, but the input is"),
        ([room, "-o", str(tmp_path / "scene.txt")], "scene.txt: the scene file must end in .npz"),
        ([room, "-o", str(tmp_path / "a_file" / "s.npz")], "a_file is a file, not a directory"),
        ([room, "-o", out, "--sdf-spacing", "0"], "--sdf-spacing: expected a positive number of metres"),
    ]
    for args, message in cases:
        code, _, err = _prepare(capsys, *args)
        assert code == 2, (args, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sahmr scene: error: "), (args, err)
        assert message in lines[0], (args, lines[0])
        assert "Traceback" not in err
    assert not (tmp_path / "scene.npz").exists()
