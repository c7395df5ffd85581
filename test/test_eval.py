"""``sahmr eval``: the runner on hand-checkable estimates, the report read back, the refusals, the bag path."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from sahmr_ros import constants as C
from sahmr_ros.data.sample import Person, Sample, Scene
from sahmr_ros.data.shards import ShardWriter
from sahmr_ros.evaluation.metrics import SDFGrid, contact_ground_truth_labels
from sahmr_ros.pipeline import FrameResult, PersonResult, SkippedPerson

W, H = 320, 240
K = np.array([[250.0, 0.0, 160.0], [0.0, 250.0, 120.0], [0.0, 0.0, 1.0]])
CAMERA_HEIGHT = 1.2
PITCH = 0.04
# camera optical axes in the map (z up): x right = -y, y down = -z, z forward = +x
T_MAP_CAMERA = np.array([[0.0, 0.0, 1.0, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, CAMERA_HEIGHT],
                         [0.0, 0.0, 0.0, 1.0]])


def _floor_scene() -> Scene:
    xs, ys = np.arange(0.5, 9.0, PITCH), np.arange(-3.0, 3.0, PITCH)
    gx, gy = np.meshgrid(xs, ys, indexing="ij")
    cloud = np.stack([gx.ravel(), gy.ravel(), np.zeros(gx.size)], axis=1)
    sdf = SDFGrid.from_function(lambda p: p[..., 2], [0.0, -4.0, -1.0], [10.0, 4.0, 3.0], (11, 9, 5))
    return Scene(scene_id="floor", cloud=cloud, pitch=PITCH, sdf=sdf, generator_version="test", extra={})


def _person(assets, scene: Scene, depth: float, lateral: float, category: str, box=None) -> Person:
    """The synthetic body (template pose) standing on the floor ``depth`` m in front of the camera."""
    template = assets.template_vertices.astype(np.float64)  # camera orientation, pelvis at the origin
    pelvis = np.array([lateral, CAMERA_HEIGHT - template[:, 1].max(), depth])  # feet exactly on the floor
    verts_cam = template + pelvis
    verts_map = verts_cam @ T_MAP_CAMERA[:3, :3].T + T_MAP_CAMERA[:3, 3]
    reg = assets.j_regressor_h36m.astype(np.float64)
    j_cam, j_map = reg @ verts_cam, reg @ verts_map
    labels = contact_ground_truth_labels(scene.cloud, verts_map, assets.part_ids_6890)
    if box is None:
        uv = verts_cam[:, :2] / verts_cam[:, 2:] * K[[0, 1], [0, 1]] + K[:2, 2]
        box = np.concatenate([uv.min(0), uv.max(0)])
    idx14 = list(C.H36M_J17_TO_J14)
    return Person(box_xyxy=box, visible_fraction=1.0, category=category, root_camera=j_cam[0], root_map=j_map[0],
                  joints14_camera=j_cam[idx14], joints14_map=j_map[idx14], vertices_camera=verts_cam,
                  vertices_map=verts_map, vertex_contact=verts_map[:, 2] < 0.02,
                  scene_contact_indices=np.flatnonzero(labels), scene_contact_labels=labels[labels > 0])


def _samples(assets, scene: Scene, body_model: str = "synthetic") -> list[Sample]:
    rng = np.random.default_rng(0)

    def sample(i, persons, **kw):
        image = rng.integers(60, 200, size=(H, W, 3), dtype=np.uint8)
        return Sample(key=f"test_{i:03d}", image=image, K=K, T_map_camera=T_MAP_CAMERA, scene_id=scene.scene_id,
                      persons=persons, split="test", seed=i, extra={"body_model": body_model}, **kw)

    return [
        sample(0, [_person(assets, scene, 3.0, -0.6, "standing"), _person(assets, scene, 5.0, 0.8, "walking")]),
        # the second box lies entirely right of the image: the pipeline skips it
        sample(1, [_person(assets, scene, 1.8, 0.0, "standing"),
                   _person(assets, scene, 4.0, 0.0, "walking", box=np.array([400.0, 10.0, 450.0, 90.0]))]),
        sample(2, [_person(assets, scene, 7.0, 0.3, "standing")], distortion_model="plumb_bob",
               distortion_coeffs=np.array([0.01, -0.002, 0.0, 0.0, 0.0])),
    ]


def _write_data(path: Path, assets, body_model: str = "synthetic", bags: bool = True) -> Path:
    from sahmr_ros.evaluation.bags import EvalBagWriter

    scene = _floor_scene()
    samples = _samples(assets, scene, body_model)
    with ShardWriter(path, prefix="test", generator_version="test-eval", seed=0) as w:
        w.write_scene(scene)
        for s in samples:
            w.write(s)
    if bags:
        with EvalBagWriter(path, "test") as bw:
            bw.write_bag("floor", scene, samples)
    return path


@pytest.fixture(scope="module")
def assets(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets

    return load_body_assets(synthetic_model_dir)


@pytest.fixture(scope="module")
def data_dir(assets, tmp_path_factory) -> Path:
    return _write_data(tmp_path_factory.mktemp("eval_data") / "data", assets)


class _ShiftedTruth:
    """A stand-in pipeline: every person is the ground truth moved by ``shift`` (m), with perfect contacts."""

    faces = None

    def __init__(self, data, shift):
        self.data, self.shift, self.calls = data, np.asarray(shift, np.float64), 0
        self.scene = None

    def set_scene(self, points):
        self.scene = np.asarray(points)

    def process(self, image, K, T_map_camera, boxes, scores=None):
        sample = self.data.sample(self.calls)
        self.calls += 1
        frame = FrameResult()
        for i, (gt, box) in enumerate(zip(sample.persons, boxes)):
            if box[0] >= image.shape[1]:
                frame.skipped.append(SkippedPerson(i, f"boxes[{i}]: entirely outside the image"))
                continue
            frame.persons.append(PersonResult(
                box_index=i, box_xyxy=box, score=1.0, root_map=gt.root_map + self.shift, root_camera=gt.root_camera,
                coarse_root_camera=gt.root_camera, joints14_map=gt.joints14_map + self.shift,
                vertices_map=gt.vertices_map.astype(np.float64) + self.shift,
                contact_points_map=self.scene[gt.scene_contact_indices],
                contact_labels=gt.scene_contact_labels.astype(np.int64), num_roi_voxels=10))
        frame.timings_ms = {"total": 1.0}
        return frame


def test_ground_truth_moved_by_a_known_vector_gives_its_length(data_dir, assets):
    from sahmr_ros.evaluation.evaluate import evaluate, open_data
    from sahmr_ros.evaluation.report import summarize

    shift = np.array([0.03, -0.04, 0.12])  # |t| = 130 mm, upwards: no penetration
    data = open_data(data_dir, "test", expect_body="synthetic")
    result = evaluate(data, _ShiftedTruth(data, shift), assets.j_regressor_h36m, progress=False)
    rows = result.rows
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "skipped", "ok"]
    assert "outside" in rows[3]["skip_reason"]
    ok = [r for r in rows if r["status"] == "ok"]
    for r in ok:
        assert r["g_mpve_mm"] == pytest.approx(130.0, abs=1e-3)
        assert r["g_mpjpe_mm"] == pytest.approx(130.0, abs=1e-3)
        assert r["root_error_mm"] == pytest.approx(130.0, abs=1e-3)
        assert r["mpve_mm"] == pytest.approx(0.0, abs=1e-3) and r["mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
        assert r["pa_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
        assert r["coarse_root_error_mm"] == pytest.approx(0.0, abs=1e-3)
        assert r["contact_precision"] == r["contact_recall"] == r["contact_f1"] == 1.0
        assert r["pene_m"] == 0.0
    # ConFE by hand: the SDF is the height above the floor, every vertex is above it, so ConFE is the
    # sum over the ground-truth contact vertices of their height after the shift
    gt = data.sample(0).persons[0]
    expected = float((gt.vertices_map[gt.vertex_contact, 2].astype(np.float64) + shift[2]).sum())
    assert rows[0]["confe_m"] == pytest.approx(expected, rel=1e-5)
    assert [r["distance_band"] for r in rows] == ["2-4 m", "4-6 m", "0-2 m", "4-6 m", "6-8 m"]
    overall = summarize(rows)["overall"]
    assert overall["persons"] == 5 and overall["evaluated"] == 4
    assert overall["skipped"] == pytest.approx(0.2) and overall["flagged"] == 0.0
    assert overall["g_mpve_mm"] == pytest.approx(130.0, abs=1e-3) and overall["contact_f1"] == 1.0


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _mean(rows, column) -> float:
    values = [float(r[column]) for r in rows if r["status"] == "ok" and r[column] != ""]
    return sum(values) / len(values)


def test_sahmr_eval_demo_end_to_end_and_bag_path(data_dir, tmp_path, capsys):
    """--demo: the shipped weights, named in the output and the report; --untrained marks the report."""
    from PIL import Image

    from sahmr_ros.cli import main
    from sahmr_ros.weights import shipped_weights

    out = tmp_path / "report"
    assert main(["eval", "--data", str(data_dir), "--demo", "-o", str(out), "--device", "cpu", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    weights = shipped_weights().description
    assert f"weights: {weights}" in printed and "UNTRAINED" not in printed
    assert f"report: {out / 'summary.md'}" in printed

    rows = _read_csv(out / "per_sample.csv")
    assert [r["sample"] for r in rows] == ["test_000", "test_000", "test_001", "test_001", "test_002"]
    assert [r["status"] for r in rows] == ["ok", "ok", "ok", "skipped", "ok"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["format"] == "sahmr_ros.eval" and summary["run"]["body_model"] == "synthetic"
    assert summary["run"]["untrained"] is False and summary["run"]["samples"] == 3
    assert summary["run"]["weights"].startswith(weights)
    overall = summary["metrics"]["overall"]
    for column in ("g_mpjpe_mm", "g_mpve_mm", "mpjpe_mm", "mpve_mm", "pa_mpjpe_mm", "pene_m", "confe_m",
                   "root_error_mm", "coarse_root_error_mm"):
        assert overall[column] == pytest.approx(_mean(rows, column), rel=1e-9), column
    tp = sum(int(r[f"contact_tp_{p}"]) for r in rows for p in C.CONTACT_PART_NAMES[1:])
    gt = sum(int(r[f"contact_gt_{p}"]) for r in rows for p in C.CONTACT_PART_NAMES[1:])
    assert gt > 0 and (overall["contact_recall"] == pytest.approx(tp / gt))
    assert overall["persons"] == 5 and overall["skipped"] == pytest.approx(0.2)
    assert set(summary["metrics"]["per_category"]) == {"standing", "walking"}
    assert summary["metrics"]["per_category"]["walking"]["persons"] == 2
    assert list(summary["metrics"]["per_distance_band"]) == ["0-2 m", "2-4 m", "4-6 m", "6-8 m"]
    assert summary["metrics"]["per_distance_band"]["2-4 m"]["g_mpve_mm"] == pytest.approx(float(rows[0]["g_mpve_mm"]))

    md = (out / "summary.md").read_text()
    assert "| group | persons | G-MPJPE |" in md and "| **overall** | 5 |" in md
    assert "| category: walking | 2 |" in md and "| distance 6-8 m | 1 |" in md
    assert f"- weights: {weights}" in md and "UNTRAINED" not in md
    for name in ("cdf_pose", "cdf_root", "cdf_scene", "contact_parts", "samples"):
        path = out / "plots" / f"{name}.png"
        assert f"plots/{name}.png" in md
        with Image.open(path) as im:
            im.verify()

    # the node's code path on the same frames (the first two) gives the same estimates (no coarse root
    # in the message; the box the pipeline skips is not published: missing)
    bag_out = tmp_path / "report_bag"
    assert main(["eval", "--data", str(data_dir), "--demo", "-o", str(bag_out), "--bag", "--limit", "2",
                 "--device", "cpu", "--no-progress", "--no-plots"]) == 0
    bag_rows = _read_csv(bag_out / "per_sample.csv")
    assert [r["status"] for r in bag_rows] == ["ok", "ok", "ok", "missing"]
    for a, b in zip(rows, bag_rows):
        if a["status"] == "ok":
            for column in ("g_mpve_mm", "mpjpe_mm", "pa_mpjpe_mm", "root_error_mm", "pene_m", "confe_m"):
                assert float(b[column]) == pytest.approx(float(a[column]), rel=1e-5, abs=1e-6), column
            assert b["coarse_root_error_mm"] == "" and b["contact_f1"] == a["contact_f1"]
    bag_summary = json.loads((bag_out / "summary.json").read_text())
    assert bag_summary["run"]["path"] == "node" and (bag_out / "bag_outputs" / "floor").is_dir()

    untrained = tmp_path / "report_untrained"
    capsys.readouterr()
    assert main(["eval", "--data", str(data_dir), "--demo", "--untrained", "-o", str(untrained), "--limit", "1",
                 "--device", "cpu", "--no-progress", "--no-plots"]) == 0
    assert "UNTRAINED" in capsys.readouterr().out and "UNTRAINED" in (untrained / "summary.md").read_text()
    assert json.loads((untrained / "summary.json").read_text())["run"]["untrained"] is True


def test_sahmr_eval_refuses_clearly(data_dir, assets, synthetic_model_dir, tmp_path, capsys):
    from sahmr_ros.cli import main

    def refused(*args) -> str:
        assert main(["eval", *args, "-o", str(tmp_path / "out"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        return err

    smpl_dir = tmp_path / "smpl_models"  # the same files, without the synthetic marker: "SMPL" to sahmr
    shutil.copytree(synthetic_model_dir, smpl_dir)
    (smpl_dir / C.SYNTHETIC_MARKER_FILENAME).unlink()
    err = refused("--data", str(data_dir), "--checkpoint", str(tmp_path / "never_read.pt"), "--model-dir",
                  str(smpl_dir))
    assert "body model mismatch" in err and "synthetic body" in err and "--demo" in err

    smpl_data = _write_data(tmp_path / "smpl_data", assets, body_model="smpl", bags=False)
    err = refused("--data", str(smpl_data), "--demo")
    assert "body model mismatch" in err and "made with the smpl body" in err
    assert "no rosbag2 files" in refused("--data", str(smpl_data), "--checkpoint", "x.pt", "--model-dir",
                                         str(smpl_dir), "--bag")
    assert "not a data directory" in refused("--data", str(tmp_path), "--demo")
    assert "not a directory" in refused("--data", str(tmp_path / "nowhere"), "--demo")
    assert "split 'train' is empty" in refused("--data", str(data_dir), "--split", "train", "--demo")
    assert "--untrained: only with --demo" in refused("--data", str(data_dir), "--checkpoint", "x.pt", "--untrained")
    assert not (tmp_path / "out").exists()


def test_distance_bands_and_sample_selection():
    from sahmr_ros.evaluation.evaluate import distance_band
    from sahmr_ros.evaluation.report import select_samples

    bands = [distance_band(d) for d in (0.0, 1.99, 2.0, 7.5, 8.0, 30.0)]
    assert bands == ["0-2 m", "0-2 m", "2-4 m", "6-8 m", "> 8 m", "> 8 m"]
    rows = [{"sample": f"s{i}", "status": "ok", "g_mpve_mm": float(v)} for i, v in enumerate([5, 1, 9, 3, 7, 2, 8])]
    rows.append({"sample": "s9", "status": "skipped", "g_mpve_mm": math.nan})
    worst, median = select_samples(rows, 2)
    assert worst == ["s2", "s6"] and median == ["s0", "s3"]  # ranked 9 8 7 5 3 2 1: the middle is 5


def test_sahmr_eval_on_the_official_rich_layout(synthetic_model_dir, tmp_path, capsys):
    """An official-data directory (the release's RICH layout) with a checkpoint and an SMPL-layout model dir."""
    import torch

    from sahmr_ros.body import load_body_assets
    from sahmr_ros.checkpoint import save_checkpoint
    from sahmr_ros.cli import main
    from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig
    from test_data_storage import _official_assets, _write_rich

    models = tmp_path / "models"  # the synthetic files without their marker stand in for SMPL
    shutil.copytree(synthetic_model_dir, models)
    (models / C.SYNTHETIC_MARKER_FILENAME).unlink()
    rng = np.random.default_rng(0)
    fake = _official_assets(tmp_path / "fake", rng)  # the SMPL-X -> SMPL transfer (a selection)
    (models / "model_transfer").mkdir()
    shutil.copy(fake["transfer"], models / "model_transfer")
    _write_rich(tmp_path / "RICH", rng, None)
    torch.manual_seed(0)
    checkpoint = save_checkpoint(tmp_path / "small.pt", SAHMR(SAHMRConfig.small(), load_body_assets(models)), "small")
    out = tmp_path / "report"
    assert main(["eval", "--data", str(tmp_path / "RICH"), "--checkpoint", str(checkpoint), "--model-dir",
                 str(models), "-o", str(out), "--device", "cpu", "--no-progress", "--no-plots"]) == 0
    assert "rich" in capsys.readouterr().out
    rows = _read_csv(out / "per_sample.csv")
    assert [r["sample"] for r in rows] == ["Gym_013_pushup1_00000_03", "Gym_013_pushup1_00001_03"]
    assert all(r["status"] == "ok" and r["category"] == "pushup" for r in rows)
    assert all(float(r["confe_m"]) >= float(r["pene_m"]) >= 0 and r["coarse_root_error_mm"] != "" for r in rows)
    assert sum(int(r[f"contact_gt_{p}"]) for r in rows for p in C.CONTACT_PART_NAMES[1:]) > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["data_kind"] == "rich" and summary["run"]["body_model"] == "smpl"
    assert list(summary["metrics"]["per_category"]) == ["pushup"]


def test_the_evaluation_package_imports_no_ros():
    import subprocess
    import sys

    code = ("import sys, sahmr_ros.evaluation, sahmr_ros.evaluation.bags; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'rosbags') "
            "or m.startswith('sahmr_ros.ros')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
