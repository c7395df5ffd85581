"""The per-frame pipeline end to end (small preset, synthetic body, demo room), and bad input."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError, ModelFilesMissingError
from sahmr_ros.geometry import transform_points
from sahmr_ros.pipeline import FLAG_NO_SCENE_POINTS, STAGES, Pipeline, PipelineConfig


@pytest.fixture(scope="module")
def demo_scene(synthetic_model_dir):
    from sahmr_ros.demo.run import make_demo_scene

    return make_demo_scene(synthetic_model_dir)


def _pin_root_depth(pipe: Pipeline, scene, depth_m: float) -> None:
    """Untrained weights put the root anywhere; pin the depth channel so ROIs hold scene points."""
    width = float(np.max(scene.boxes[:, 2:] - scene.boxes[:, :2]) * C.CROP_SCALE)
    conv = pipe.model.rcnet.root_net.out_conv
    with torch.no_grad():
        conv.weight[C.ROOT_NET_DEPTH_CHANNEL].zero_()
        conv.bias[C.ROOT_NET_DEPTH_CHANNEL] = depth_m * width / scene.K[0, 0]


@pytest.fixture(scope="module")
def pipe(synthetic_model_dir, demo_scene):
    """Untrained weights with the root depth pinned: the tolerances below were measured with them."""
    p = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"), weights="untrained")
    _pin_root_depth(p, demo_scene, 3.0)
    p.set_scene(demo_scene.scene_points_map)
    return p


def _run(pipe, scene, boxes=None, **kw):
    return pipe.process(scene.image, scene.K, scene.T_map_camera, scene.boxes if boxes is None else boxes, **kw)


def test_end_to_end_outputs_in_the_map_frame(pipe, demo_scene, synthetic_model_dir):
    from sahmr_ros.body import load_body_assets

    frame = _run(pipe, demo_scene)
    assert [p.box_index for p in frame.persons] == [0, 1] and not frame.skipped
    assert set(frame.timings_ms) == set(STAGES) and frame.timings_ms["total"] > 0
    j14 = load_body_assets(synthetic_model_dir).j_regressor_h36m[list(C.H36M_J17_TO_J14)]
    for p in frame.persons:
        assert p.vertices_map.shape == (C.NUM_VERTICES, 3) and np.isfinite(p.vertices_map).all()
        assert p.joints14_map.shape == (14, 3)
        # independent checks of the frame conversions and the joint regressor
        np.testing.assert_allclose(p.root_map, transform_points(demo_scene.T_map_camera, p.root_camera), atol=1e-5)
        np.testing.assert_allclose(p.joints14_map, j14 @ p.vertices_map, atol=1e-3)
        assert p.num_roi_voxels > 0 and not p.flags
        # every contact point is a scene point, labelled with a body part
        if len(p.contact_labels):
            assert set(np.unique(p.contact_labels)) <= set(range(1, C.NUM_CONTACT_CLASSES))
            scene = pipe.scene.points_map
            d = np.min(np.linalg.norm(p.contact_points_map[:50, None] - scene[None], axis=2), axis=1)
            assert d.max() < 1e-4


def test_same_input_same_output_bit_for_bit(pipe, demo_scene):
    a, b = _run(pipe, demo_scene), _run(pipe, demo_scene)
    for pa, pb in zip(a.persons, b.persons):
        assert np.array_equal(pa.vertices_map, pb.vertices_map)
        assert np.array_equal(pa.contact_points_map, pb.contact_points_map)


def test_batched_persons_equal_persons_alone(pipe, demo_scene):
    both = _run(pipe, demo_scene)
    for i in range(2):
        alone = _run(pipe, demo_scene, demo_scene.boxes[i : i + 1])
        np.testing.assert_allclose(alone.persons[0].vertices_map, both.persons[i].vertices_map, atol=1e-4)
        np.testing.assert_allclose(alone.persons[0].root_map, both.persons[i].root_map, atol=1e-5)


def test_no_boxes_gives_an_empty_result(pipe, demo_scene):
    frame = _run(pipe, demo_scene, np.zeros((0, 4)))
    assert frame.persons == [] and frame.skipped == []


@pytest.mark.parametrize(
    "bad_box, reason",
    [
        ([np.nan, 10, 50, 90], "non-finite"),
        ([100, 100, 100, 200], "degenerate"),
        ([300, 200, 250, 260], "degenerate"),
        ([-300, -200, -100, -50], "outside"),
        ([700, 10, 900, 200], "outside"),
    ],
)
def test_a_bad_box_is_skipped_and_the_others_processed(pipe, demo_scene, bad_box, reason):
    boxes = np.array([demo_scene.boxes[0], bad_box, demo_scene.boxes[1]], dtype=np.float64)
    frame = _run(pipe, demo_scene, boxes)
    assert [p.box_index for p in frame.persons] == [0, 2]
    assert len(frame.skipped) == 1 and frame.skipped[0].box_index == 1
    assert reason in frame.skipped[0].reason and "boxes[1]" in frame.skipped[0].reason


def test_max_persons_keeps_the_best_scores(synthetic_model_dir, demo_scene):
    p = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu", max_persons=1))
    p.set_scene(demo_scene.scene_points_map)
    frame = _run(p, demo_scene, scores=np.array([0.2, 0.9]))
    assert [q.box_index for q in frame.persons] == [1]
    assert "max_persons" in frame.skipped[0].reason


def test_empty_roi_is_flagged_and_root_comes_from_the_image(synthetic_model_dir, demo_scene):
    p = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"))
    p.set_scene(demo_scene.scene_points_map + np.array([500.0, 500.0, 0.0], dtype=np.float32))  # room elsewhere
    frame = _run(p, demo_scene)
    for q in frame.persons:
        assert q.flags == (FLAG_NO_SCENE_POINTS,) and q.num_roi_voxels == 0
        assert len(q.contact_labels) == 0
        np.testing.assert_allclose(q.root_camera, q.coarse_root_camera, atol=1e-6)
        assert np.isfinite(q.vertices_map).all()


def test_nonfinite_scene_points_are_filtered(synthetic_model_dir, demo_scene):
    p = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"))
    pts = demo_scene.scene_points_map.copy()
    pts[::7] = np.nan
    scene = p.set_scene(pts)
    assert scene.num_dropped_nonfinite == len(pts[::7]) and np.isfinite(scene.points_map).all()
    assert all(np.isfinite(q.vertices_map).all() for q in _run(p, demo_scene).persons)


def test_frame_level_bad_input_raises_naming_the_field(pipe, demo_scene, synthetic_model_dir):
    s = demo_scene
    with pytest.raises(InputError, match="K: contains NaN"):
        pipe.process(s.image, np.full((3, 3), np.nan), s.T_map_camera, s.boxes)
    T = s.T_map_camera.copy()
    T[0, 0] = 5
    with pytest.raises(InputError, match="T_map_camera"):
        pipe.process(s.image, s.K, T, s.boxes)
    with pytest.raises(InputError, match="image: expected dtype uint8"):
        pipe.process(s.image.astype(np.float32), s.K, s.T_map_camera, s.boxes)
    with pytest.raises(InputError, match="boxes: expected an"):
        pipe.process(s.image, s.K, s.T_map_camera, np.zeros((2, 3)))
    fresh = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"))
    with pytest.raises(InputError, match="scene: no scene set"):
        fresh.process(s.image, s.K, s.T_map_camera, s.boxes)


def test_precision_and_device_options_are_checked():
    with pytest.raises(InputError, match="precision: 'fp8' unknown; choose fp32, bf16, fp16, auto"):
        PipelineConfig(precision="fp8")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):
            PipelineConfig(device="cuda").resolved_device()


@pytest.mark.parametrize("has_bf16", [True, False])
def test_auto_precision_is_bf16_on_cpus_with_native_bf16_only(monkeypatch, synthetic_model_dir, has_bf16):
    """auto: bf16 where the CPU has AVX512-BF16 / AMX, else fp32; fp32 on CUDA; explicit ones unchanged."""
    import sahmr_ros.networks.precision as precision

    monkeypatch.setattr(precision, "cpu_supports_bf16", lambda: has_bf16)
    expected = "bf16" if has_bf16 else "fp32"
    assert precision.resolve_precision("auto", "cpu") == expected
    assert precision.resolve_precision("auto", "cuda") == "fp32"
    assert precision.resolve_precision("fp16", "cpu") == "fp16"
    pipe = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu", precision="auto"))
    assert pipe.precision == expected
    assert pipe.autocast_dtype == (torch.bfloat16 if has_bf16 else None)


def test_bf16_is_detected_from_the_cpuinfo_flags(tmp_path):
    from sahmr_ros.networks.precision import cpu_supports_bf16

    for flags, expected in (("fpu avx512f avx512_bf16", True), ("fpu amx_tile amx_bf16", True),
                            ("fpu avx2 avx512f avx512bw", False)):
        (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu_supports_bf16(tmp_path / "cpuinfo") is expected
    assert cpu_supports_bf16(tmp_path / "missing") is False  # not Linux: no bf16 assumed


# Half precision on CPU against fp32, same weights and frame (depth pinned at 3 m: roots at 3.5 and
# 4.6 m). The networks' own outputs may differ; tolerances, metres: (refined root, vertices max,
# vertices mean). Measured on the development machine: bf16 6e-4, 3.6e-3, 1.3e-3; fp16 5e-5, 5e-4, 1.5e-4.
HALF_PRECISION_TOLERANCE_M = {"bf16": (2e-3, 1e-2, 3e-3), "fp16": (2e-4, 2e-3, 5e-4)}


@contextlib.contextmanager
def _pinned_root_pixel(*pipes):
    """Put the pelvis heatmap's peak at the crop centre (untrained heatmaps are flat: their argmax is a
    tie that half-precision trunk features break differently, moving the coarse root by one cell)."""
    def peak_at_centre(module, inputs, output):
        out = output.clone()
        heat = torch.zeros_like(out[:, C.ROOT_NET_PELVIS_CHANNEL])
        heat[:, heat.shape[1] // 2, heat.shape[2] // 2] = 1.0
        out[:, C.ROOT_NET_PELVIS_CHANNEL] = heat
        return out

    handles = [p.model.rcnet.root_net.register_forward_hook(peak_at_centre) for p in pipes]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@pytest.mark.parametrize("precision", sorted(HALF_PRECISION_TOLERANCE_M))
def test_half_precision_on_cpu_matches_fp32(synthetic_model_dir, demo_scene, pipe, precision):
    """The coarse root (same pinned depth, same heatmap peak) and the ROI voxels are those of fp32;
    the refined root and the vertices are within the stated tolerances."""
    half = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu", precision=precision),
                                     weights="untrained")  # pipe's weights are loaded next
    half.model.load_state_dict(pipe.model.state_dict())
    half.set_scene(demo_scene.scene_points_map)
    with _pinned_root_pixel(pipe, half):
        a, b = _run(pipe, demo_scene), _run(half, demo_scene)
    root_tol, vertex_max, vertex_mean = HALF_PRECISION_TOLERANCE_M[precision]
    assert len(a.persons) == len(b.persons) == 2
    for pa, pb in zip(a.persons, b.persons):
        np.testing.assert_allclose(pb.coarse_root_camera, pa.coarse_root_camera, atol=1e-6, rtol=0)
        assert pb.num_roi_voxels == pa.num_roi_voxels > 0 and not pb.flags
        assert np.linalg.norm(pb.root_camera - pa.root_camera) <= root_tol
        error = np.linalg.norm(pb.vertices_map - pa.vertices_map, axis=1)
        assert error.max() <= vertex_max and error.mean() <= vertex_mean
        assert pb.vertices_map.dtype == np.float32 and np.isfinite(pb.vertices_map).all()


def test_a_model_converted_by_a_half_precision_pipeline_is_refused_for_fp32(synthetic_model_dir):
    """A bf16 CPU Pipeline stores the network weights in bf16; an fp32 Pipeline on that model says so."""
    half = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu", precision="bf16"))
    layers = half.model.network_layers()
    assert {p.dtype for layer in layers for p in layer.parameters()} >= {torch.bfloat16}
    assert half.model.mesh_network.upsampling.weight.dtype == torch.float32  # geometry layers untouched
    with pytest.raises(InputError, match="stored in bfloat16 .* load the checkpoint again for precision fp32"):
        Pipeline(half.model, half.faces, PipelineConfig(device="cpu", precision="fp32"))


def test_missing_model_files_are_all_named(tmp_path):
    with pytest.raises(ModelFilesMissingError) as err:
        Pipeline.from_model_dir(tmp_path, preset="small")
    text = str(err.value)
    for name in ("SMPL_NEUTRAL", "J_regressor_h36m_correct.npy", "mesh_downsampling.npz", "seg_part_info.npy"):
        assert name in text
    assert "smpl.is.tue.mpg.de" in text


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on CI machines)")
def test_cuda_matches_cpu(synthetic_model_dir, demo_scene, pipe):
    gpu = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cuda"), weights="untrained")
    gpu.model.load_state_dict(pipe.model.state_dict())
    gpu.set_scene(demo_scene.scene_points_map)
    a, b = _run(pipe, demo_scene), _run(gpu, demo_scene)
    for pa, pb in zip(a.persons, b.persons):
        np.testing.assert_allclose(pa.vertices_map, pb.vertices_map, atol=1e-3)


def test_non_finite_weights_flag_people_instead_of_crashing(synthetic_model_dir, demo_scene):
    from sahmr_ros.pipeline import FLAG_NON_FINITE

    p = Pipeline.embedded_default(synthetic_model_dir, PipelineConfig(device="cpu"))
    with torch.no_grad():
        p.model.rcnet.root_net.out_conv.bias.fill_(float("nan"))
    p.set_scene(demo_scene.scene_points_map)
    frame = _run(p, demo_scene)
    assert len(frame.persons) == 2
    assert all(FLAG_NON_FINITE in q.flags and FLAG_NO_SCENE_POINTS in q.flags for q in frame.persons)
