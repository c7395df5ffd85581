"""Body model: chumpy-free SMPL loading, official assets, the synthetic body, BodyAssets."""

from __future__ import annotations

import io
import pickle
import shutil
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse
import torch
import trimesh

from sahmr_ros import constants as C
from sahmr_ros.body import (
    RestrictedUnpickler,
    h36m_joints,
    h36m_pelvis,
    joints14_from_vertices,
    load_body_assets,
    load_body_model,
    load_h36m_regressor,
    load_mesh_downsampling,
    load_seg_part_info,
    load_smpl_arrays,
    selection_indices,
)
from sahmr_ros.body import synthetic
from sahmr_ros.body.smpl import read_npz_member
from sahmr_ros.errors import InputError, ModelFilesMissingError


@pytest.fixture(scope="module")
def body() -> synthetic.SyntheticBody:
    return synthetic.make_synthetic_body()


@pytest.fixture(scope="module")
def official_dir(shared_dir) -> Path:
    path = shared_dir / "reference" / "official_assets"
    if not path.is_dir():
        pytest.skip("../shared/reference/official_assets not present")
    return path


def _pkl_path(model_dir: Path) -> Path:
    return model_dir / C.SMPL_SUBDIR / C.SMPL_NEUTRAL_FILENAMES[0]


# --- naive reference: SMPL linear blend skinning in numpy -------------------------------------------
def _rodrigues(axis_angle: np.ndarray) -> np.ndarray:
    """(N, 3) -> (N, 3, 3)."""
    out = []
    for r in axis_angle:
        angle = np.linalg.norm(r)
        if angle < 1e-12:
            out.append(np.eye(3))
            continue
        k = r / angle
        kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
        out.append(np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx)
    return np.stack(out)


def _naive_smpl(b: synthetic.SyntheticBody, betas, pose, transl):
    """betas (10,), pose (24, 3), transl (3,) -> vertices (6890, 3), joints (24, 3)."""
    v_shaped = b.vertices + b.shapedirs @ betas
    joints = b.j_regressor.toarray() @ v_shaped
    rot = _rodrigues(pose)
    v_posed = v_shaped + b.posedirs @ (rot[1:] - np.eye(3)).ravel()
    world = []
    for i in range(24):
        local = np.eye(4)
        local[:3, :3] = rot[i]
        local[:3, 3] = joints[i] - (joints[b.parents[i]] if i else 0)
        world.append(local if i == 0 else world[b.parents[i]] @ local)
    world = np.stack(world)
    skin = world.copy()
    skin[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints)
    per_vertex = np.einsum("vj,jab->vab", b.weights, skin)
    homo = np.concatenate([v_posed, np.ones((len(v_posed), 1))], axis=1)
    vertices = np.einsum("vab,vb->va", per_vertex, homo)[:, :3] + transl
    return vertices, world[:, :3, 3] + transl


def test_loaded_synthetic_model_matches_naive_lbs(synthetic_model_dir, body):
    model = load_body_model(synthetic_model_dir, dtype=torch.float64)
    rng = np.random.default_rng(0)
    for _ in range(3):
        betas, pose, transl = rng.normal(0, 1.5, 10), rng.normal(0, 0.4, (24, 3)), rng.normal(0, 1, 3)
        out = model(betas=torch.tensor(betas[None]), global_orient=torch.tensor(pose[None, 0]),
                    body_pose=torch.tensor(pose[None, 1:].reshape(1, 69)), transl=torch.tensor(transl[None]))
        vertices, joints = _naive_smpl(body, betas, pose, transl)
        np.testing.assert_allclose(out.vertices[0].numpy(), vertices, atol=1e-5)
        np.testing.assert_allclose(out.joints[0, :24].numpy(), joints, atol=1e-5)


def test_smpl_file_round_trips_the_generator_arrays(synthetic_model_dir, body):
    arrays = load_smpl_arrays(_pkl_path(synthetic_model_dir))
    assert np.array_equal(arrays["v_template"], body.vertices)
    assert arrays["f"].dtype == np.uint32 and np.array_equal(arrays["f"], body.faces)
    assert np.array_equal(arrays["weights"], body.weights)
    assert isinstance(arrays["shapedirs"], np.ndarray) and np.array_equal(arrays["shapedirs"], body.shapedirs)
    assert np.array_equal(arrays["posedirs"], body.posedirs)
    assert isinstance(arrays["J_regressor"], scipy.sparse.csc_matrix)
    assert np.array_equal(arrays["J_regressor"].toarray(), body.j_regressor.toarray())
    assert arrays["kintree_table"][0, 0] == 4294967295
    assert arrays["kintree_table"][0, 1:].tolist() == list(C.SMPL_PARENTS[1:])
    assert arrays["bs_style"] == "lbs" and arrays["bs_type"] == "lrotmin"
    np.testing.assert_allclose(arrays["J"], body.j_regressor @ body.vertices)


def test_npz_model_file_gives_the_same_model(synthetic_model_dir, tmp_path):
    arrays = load_smpl_arrays(_pkl_path(synthetic_model_dir))
    arrays["J_regressor"] = arrays["J_regressor"].toarray()
    (tmp_path / "smpl").mkdir()
    np.savez(tmp_path / "smpl" / "SMPL_NEUTRAL.npz", **arrays)
    pose = torch.zeros(1, 69)
    pose[0, 3 * 17] = 1.0  # bend the left elbow
    a = load_body_model(tmp_path)(body_pose=pose).vertices
    b = load_body_model(synthetic_model_dir)(body_pose=pose).vertices
    torch.testing.assert_close(a, b)


# --- the synthetic surface -----------------------------------------------------------------------------
def test_synthetic_mesh_is_a_closed_outward_genus0_person(body):
    v, f = body.vertices, body.faces
    assert v.shape == (C.NUM_VERTICES, 3) and f.shape == (C.NUM_FACES, 3) == (2 * len(v) - 4, 3)
    mesh = trimesh.Trimesh(v, f, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2  # V - E + F: genus 0
    assert mesh.volume > 0.04  # outward normals (signed volume), about a person's volume in m^3
    assert len(np.unique(np.sort(f, axis=1), axis=0)) == len(f) and mesh.area_faces.min() > 1e-7
    height = np.ptp(v[:, 1])
    assert 1.5 < height < 1.9
    assert np.ptp(v[:, 0]) > height * 0.9  # T-pose: arm span about the height
    head, feet = v[body.region == 1], v[np.isin(body.region, (4, 5))]
    assert head[:, 1].min() > body.joints[12, 1] - 0.05 and feet[:, 2].max() > 0.1  # head up, toes forward
    assert abs(body.joints[0, 1]) < 0.3 and np.abs(body.joints[:, 0] + body.joints[_MIRROR, 0]).max() < 1e-4


_MIRROR = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]


def test_synthetic_skinning_and_joint_regressor(body):
    assert body.weights.shape == (C.NUM_VERTICES, C.NUM_SMPL_JOINTS) and body.weights.min() >= 0
    np.testing.assert_allclose(body.weights.sum(axis=1), 1.0, atol=1e-12)
    assert (body.weights > 0.05).any(axis=0).all()  # every bone moves some vertices
    assert ((body.weights > 0.2).sum(axis=1) >= 2).mean() > 0.05  # blended near joints
    reg = body.j_regressor
    assert reg.shape == (24, C.NUM_VERTICES) and reg.nnz < 40 * 24 and reg.data.min() > 0
    np.testing.assert_allclose(np.asarray(reg.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    np.testing.assert_allclose(reg @ body.vertices, synthetic._JOINTS, atol=1e-4)
    assert body.shapedirs.shape == (C.NUM_VERTICES, 3, 10) and np.abs(body.shapedirs).max(axis=(0, 1)).min() > 0.01
    assert body.posedirs.shape == (C.NUM_VERTICES, 3, 207) and np.abs(body.posedirs).max() < 0.01


def test_synthetic_body_is_deterministic_and_fast(tmp_path, body):
    start = time.perf_counter()
    again = synthetic.make_synthetic_body.__wrapped__()
    synthetic.write_synthetic_model_dir(tmp_path)
    assert time.perf_counter() - start < 5.0
    for name in ("vertices", "faces", "weights", "shapedirs", "posedirs"):
        assert np.array_equal(getattr(again, name), getattr(body, name)), name
    assert not body.vertices.flags.writeable


# --- restricted unpickling --------------------------------------------------------------------------
def test_restricted_unpickler_refuses_foreign_classes(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    with pytest.raises(InputError, match=r"evil\.pkl.*os\.system"):
        load_smpl_arrays(path)
    with pytest.raises(InputError, match=r"builtins\.eval"):
        RestrictedUnpickler(io.BytesIO(pickle.dumps(eval)), "memory").load()


@pytest.mark.parametrize("protocol", [0, 2])
def test_restricted_unpickler_reads_chumpy_arrays_without_chumpy(protocol):
    x = np.arange(12.0).reshape(2, 3, 2)
    with synthetic._fake_chumpy() as Ch:
        data = pickle.dumps({"shapedirs": Ch(x), "J_regressor": scipy.sparse.csc_matrix(np.eye(3))}, protocol)
    assert b"chumpy.ch" in data
    loaded = RestrictedUnpickler(io.BytesIO(data), "memory").load()
    assert loaded["shapedirs"].chumpy_class == "chumpy.ch.Ch"
    assert np.array_equal(loaded["shapedirs"].state["x"], x)
    assert isinstance(loaded["J_regressor"], scipy.sparse.csc_matrix)


def test_smpl_file_shapes_are_validated(synthetic_model_dir, tmp_path):
    arrays = load_smpl_arrays(_pkl_path(synthetic_model_dir))
    arrays["v_template"] = arrays["v_template"][:100]
    path = tmp_path / "bad.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=2))
    with pytest.raises(InputError, match=r"'v_template' has shape \(100, 3\)"):
        load_smpl_arrays(path)


# --- official reference files -----------------------------------------------------------------------
def test_official_assets_load_with_the_right_shapes(official_dir):
    reg = load_h36m_regressor(official_dir / C.H36M_REGRESSOR_FILENAME)
    assert reg.shape == (17, C.NUM_VERTICES)
    np.testing.assert_allclose(reg.sum(axis=1), 1.0, atol=1e-3)
    mesh = load_mesh_downsampling(official_dir / C.MESH_DOWNSAMPLING_FILENAME)
    assert set(mesh) == {"A", "U", "D", "F"}
    idx1723 = selection_indices(mesh["D"][0])
    idx431 = selection_indices(mesh["D"][1])
    assert idx1723.shape == (1723,) and idx431.shape == (431,)
    assert len(np.unique(idx1723)) == 1723 and idx1723.max() < C.NUM_VERTICES and idx431.max() < 1723
    assert [f.shape for f in mesh["F"]] == [(13776, 3), (3442, 3), (858, 3)]
    assert [u.shape for u in mesh["U"]] == [(6890, 1723), (1723, 431)]
    seg = load_seg_part_info(official_dir / C.SEG_PART_INFO_FILENAME)
    assert tuple(seg["predefined_segparts"]) == C.SEG_PART_NAMES
    for key, n in (("verts6890_pids", 6890), ("verts431_pids", 431)):
        ids = seg[key]
        assert ids.shape == (n,) and set(np.unique(ids)) == set(range(8))
    assert np.array_equal(seg["verts6890_pids"][idx1723][idx431], seg["verts431_pids"])


def test_validate_model_dir_accepts_the_official_files_and_names_a_broken_one(official_dir, synthetic_model_dir,
                                                                              tmp_path):
    import shutil

    from sahmr_ros.body import validate_model_dir

    model_dir = tmp_path / "models"
    shutil.copytree(synthetic_model_dir / C.SMPL_SUBDIR, model_dir / C.SMPL_SUBDIR)
    for name in (C.H36M_REGRESSOR_FILENAME, C.MESH_DOWNSAMPLING_FILENAME, C.SEG_PART_INFO_FILENAME):
        shutil.copy(official_dir / name, model_dir / name)
    checks = validate_model_dir(model_dir)
    assert [c.ok for c in checks] == [True] * 4, [c.problem for c in checks]
    assert "6890 -> 1723 -> 431" in checks[2].detail
    with zipfile.ZipFile(official_dir / C.MESH_DOWNSAMPLING_FILENAME) as src:  # D: one dense level, not 2
        members = {n: src.read(n) for n in src.namelist()}
    buf = io.BytesIO()
    np.save(buf, np.zeros((1723, 6890), np.float32))
    members["D.npy"] = buf.getvalue()
    with zipfile.ZipFile(model_dir / C.MESH_DOWNSAMPLING_FILENAME, "w") as dst:
        for member, data in members.items():
            dst.writestr(member, data)
    checks = validate_model_dir(model_dir)
    assert [c.ok for c in checks] == [True, True, False, True]
    assert "key 'D' has 1 levels, expected 2" in checks[2].problem


def test_mesh_downsampling_never_reads_key_m(official_dir, tmp_path):
    original = official_dir / C.MESH_DOWNSAMPLING_FILENAME
    reference = load_mesh_downsampling(original)
    with pytest.raises(InputError, match="MyMesh|psbody"):  # M needs a long-gone mesh class
        read_npz_member(original, "M")
    with zipfile.ZipFile(original) as src:
        assert "M.npy" in src.namelist()
        members = {n: src.read(n) for n in src.namelist()}
    evil = io.BytesIO()
    np.lib.format.write_array_header_1_0(evil, {"descr": "|O", "fortran_order": False, "shape": (1,)})
    evil.write(b"cos\nsystem\n(S'echo pwned'\ntR.")
    for name, m_bytes in (("no_m.npz", None), ("evil_m.npz", evil.getvalue())):
        path = tmp_path / name
        with zipfile.ZipFile(path, "w") as dst:
            for member, data in members.items():
                if member != "M.npy":
                    dst.writestr(member, data)
                elif m_bytes is not None:
                    dst.writestr(member, m_bytes)
        loaded = load_mesh_downsampling(path)
        for key in ("A", "U", "D"):
            assert all((a != b).nnz == 0 for a, b in zip(loaded[key], reference[key]))


# --- BodyAssets ---------------------------------------------------------------------------------------
def test_body_assets_from_the_synthetic_dir(synthetic_model_dir, body):
    assets = load_body_assets(synthetic_model_dir)
    assert assets.is_synthetic and assets.source.endswith("SMPL_NEUTRAL.pkl")
    expected = {"faces": ((13776, 3), np.int64), "template_vertices": ((6890, 3), np.float32),
                "template_joints14": ((14, 3), np.float32), "template_vertices431": ((431, 3), np.float32),
                "index_1723": ((1723,), np.int64), "index_431": ((431,), np.int64),
                "j_regressor_h36m": ((17, 6890), np.float32), "part_ids_6890": ((6890,), np.int64),
                "part_ids_431": ((431,), np.int64)}
    for name, (shape, dtype) in expected.items():
        value = getattr(assets, name)
        assert value.shape == shape and value.dtype == dtype, name
    assert np.array_equal(assets.faces, body.faces)
    template = assets.template_vertices.astype(np.float64)
    pelvis = assets.j_regressor_h36m[C.H36M_PELVIS].astype(np.float64) @ template
    np.testing.assert_allclose(pelvis, 0.0, atol=1e-6)
    # flipped (x, y, z) -> (x, -y, -z) of the T-pose minus its pelvis: head up = -y
    flipped = body.vertices * np.array([1.0, -1.0, -1.0])
    flipped -= synthetic.synthetic_h36m_regressor(body)[0] @ flipped
    np.testing.assert_allclose(template, flipped, atol=1e-5)
    assert assets.template_joints14[13, 1] < -0.5 and assets.template_joints14[0, 1] > 0.7  # head, R ankle
    selected = assets.template_vertices[assets.index_1723][assets.index_431]
    np.testing.assert_array_equal(assets.template_vertices431, selected)
    for ids in (assets.part_ids_6890, assets.part_ids_431):
        assert ids.min() >= 0 and ids.max() <= 7 and set(range(1, 8)) <= set(ids.tolist())
    assert np.array_equal(assets.part_ids_6890[assets.index_1723][assets.index_431], assets.part_ids_431)
    left_foot = assets.template_vertices[assets.part_ids_6890 == 1]
    assert left_foot[:, 0].min() > 0 and left_foot[:, 1].min() > 0.5  # +x is the body's left; feet down


def test_torch_joint_helpers(synthetic_model_dir):
    assets = load_body_assets(synthetic_model_dir)
    vertices = torch.as_tensor(np.stack([assets.template_vertices, 2 * assets.template_vertices]))
    j17 = h36m_joints(vertices, assets.j_regressor_h36m)
    j14 = joints14_from_vertices(vertices, torch.as_tensor(assets.j_regressor_h36m))
    assert j17.shape == (2, 17, 3) and j14.shape == (2, 14, 3)
    torch.testing.assert_close(j14[0], torch.as_tensor(assets.template_joints14), atol=1e-5, rtol=0)
    torch.testing.assert_close(j14, j17[:, list(C.H36M_J17_TO_J14)])
    torch.testing.assert_close(h36m_pelvis(vertices, assets.j_regressor_h36m), j17[:, 0])
    with pytest.raises(InputError, match=r"vertices: expected shape \(B, 6890, 3\)"):
        joints14_from_vertices(vertices[:, :100], assets.j_regressor_h36m)


def test_missing_files_are_all_reported(synthetic_model_dir, tmp_path):
    with pytest.raises(ModelFilesMissingError) as err:
        load_body_assets(tmp_path)
    names = sorted(p.name for p, _ in err.value.missing)
    assert names == sorted(["SMPL_NEUTRAL.pkl", C.H36M_REGRESSOR_FILENAME, C.MESH_DOWNSAMPLING_FILENAME,
                            C.SEG_PART_INFO_FILENAME])
    assert "smpl.is.tue.mpg.de" in str(err.value) and "zju3dv/SA-HMR" in str(err.value)

    partial = tmp_path / "partial"
    shutil.copytree(synthetic_model_dir, partial)
    (partial / C.SEG_PART_INFO_FILENAME).unlink()
    (partial / C.H36M_REGRESSOR_FILENAME).unlink()
    with pytest.raises(ModelFilesMissingError) as err:
        load_body_assets(partial)
    assert sorted(p.name for p, _ in err.value.missing) == sorted([C.H36M_REGRESSOR_FILENAME, C.SEG_PART_INFO_FILENAME])

    with pytest.raises(ModelFilesMissingError, match=r"smpl/SMPL_NEUTRAL\.pkl.*smpl\.is\.tue\.mpg\.de"):
        load_body_model(tmp_path)
