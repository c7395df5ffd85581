"""Training batches and steps on one synthetic person: targets, determinism, finite gradients, falling loss.

The small preset on the CPU; one person, a few Adam steps per stage. The sparse CNN needs a CPU backward
(the torch backend of ``networks.sparse``); where it is missing, the RCNet steps run with the SPVCNN
replaced by a dense stand-in and the sparse-CNN variant skips, saying so.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import crop_images, in_crop_frustum, invert_transform, square_crop_boxes, transform_points
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig
from sahmr_ros.training import flip_part_heatmaps, make_batch, training_step
from sahmr_ros.training.objective import loss_weights, noisy_replacement, trainable_parameters

# Parameters of the last stage-4 module that only feed branches 1..3: RCNet's stride-4 head reads
# branch 0 alone, so they get no gradient (the same in the official model).
_UNUSED_BY_STRIDE4_HEAD = "rcnet.root_net.hrnet.stage4.0.fuse_layers."


@pytest.fixture(scope="module")
def body(synthetic_model_dir):
    from sahmr_ros.body import load_body_assets

    return load_body_assets(synthetic_model_dir)


@pytest.fixture(scope="module")
def data(synthetic_model_dir):
    """One synthetic room and one image of one person (plumb_bob lens, sitting against a backrest)."""
    from sahmr_ros.data.synth import SynthConfig, generate_scene

    config = SynthConfig(split="train", scenes=1, frames_per_scene=1, people=(1, 1), seed=0)
    scene, samples, _ = generate_scene(config, 0, str(synthetic_model_dir), "synthetic")
    return scene, samples[0]


@pytest.fixture(scope="module")
def batch(data, body):
    scene, sample = data
    return make_batch([sample], {scene.scene_id: scene}, body, rng=np.random.default_rng(0), augment=True)


def _model(body) -> SAHMR:
    torch.manual_seed(0)
    return SAHMR(SAHMRConfig.small(), body)


class _DenseContactNet(nn.Module):
    """Stand-in for the SPVCNN (same call, per-voxel MLP) while the sparse CNN has no CPU backward."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(C.CONTACT_NET_IN_DIM, 16), nn.ReLU(), nn.Linear(16, C.CONTACT_NET_OUT_DIM))

    def forward(self, coords, feats, batch_size):
        return self.mlp(feats)


def _sparse_backward_error(model: SAHMR) -> str | None:
    """Return why the sparse CNN cannot back-propagate on the CPU, or None when it can."""
    coords = torch.tensor([[0, 0, 0, 40], [0, 1, 0, 40], [0, 0, 1, 41], [0, 3, 2, 40]], dtype=torch.int32)
    feats = torch.randn(4, C.CONTACT_NET_IN_DIM, requires_grad=True)
    net = model.rcnet.contact_net
    mode = net.training
    try:
        net.eval()  # batch norm over the single coarse voxel would refuse to train
        net(coords, feats, 1).sum().backward()
    except Exception as exc:  # spconv's CPU backward raises various errors
        return f"{type(exc).__name__}: {exc}"
    finally:
        net.train(mode)
        model.zero_grad(set_to_none=True)
    return None


def _run_steps(model, batch, stage, steps=3, lr=1e-3):
    """Loss before and after ``steps`` Adam updates (same noise and dropout every step); grads of step 0."""
    params = list(trainable_parameters(model, stage))
    opt = torch.optim.Adam(params, lr=lr)
    losses, first_grads = [], None
    for i in range(steps + 1):
        torch.manual_seed(0)
        terms = training_step(model, batch, stage, np.random.default_rng(1))
        losses.append(terms["loss"].item())
        if i == steps:
            break
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        if i == 0:
            first_grads = {n: (None if p.grad is None else p.grad.clone()) for n, p in model.named_parameters()}
            assert all(torch.isfinite(v).all() for v in terms.values()), terms
        opt.step()
    return losses, first_grads, terms


def _check_grads(model, grads, stage):
    trainable = {id(p) for p in trainable_parameters(model, stage)}
    for name, p in model.named_parameters():
        g = grads[name]
        if id(p) not in trainable:
            assert g is None, f"{name}: frozen in stage {stage} but got a gradient"
        elif g is None:
            assert name.startswith(_UNUSED_BY_STRIDE4_HEAD), f"{name}: no gradient in stage {stage}"
        else:
            assert torch.isfinite(g).all(), f"{name}: non-finite gradient in stage {stage}"


# --- batches ------------------------------------------------------------------------------------------
def test_make_batch_holds_the_pipeline_crop_and_camera_frame_ground_truth(data, body):
    scene, sample = data
    from sahmr_ros.evaluation.evaluate import frame_inputs

    b = make_batch([sample], {scene.scene_id: scene}, body, augment=False)
    person = sample.persons[0]
    assert len(b) == 1 and b.keys == [f"{sample.key}/0"]
    assert b.crops.shape == (1, 3, 224, 224) and b.crops.dtype == torch.float32
    assert np.array_equal(b.bbx_lurb.numpy(), square_crop_boxes(person.box_xyxy[None]))
    image, K = frame_inputs(sample)  # undistorted, as the pipeline gets it
    img = torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)
    assert torch.equal(b.crops, crop_images(img, b.bbx_lurb))
    assert np.array_equal(b.K[0].numpy(), K)
    assert np.allclose(b.root_camera[0].numpy(), person.root_camera)
    assert b.vertices_camera.shape == (1, C.NUM_VERTICES, 3) and b.joints14_camera.shape == (1, 14, 3)
    assert b.vertex_parts.shape == (C.NUM_VERTICES,) and b.j_regressor_h36m.shape == (17, C.NUM_VERTICES)
    # frustum points in the camera frame, with the sample's contact labels
    pts, labels = b.frustum_points[0].double().numpy(), b.frustum_labels[0].numpy()
    assert in_crop_frustum(pts, K, b.bbx_lurb[0].numpy()).all()
    cloud_cam = transform_points(invert_transform(sample.T_map_camera), scene.cloud.astype(np.float64))
    contact_inside = in_crop_frustum(cloud_cam[person.scene_contact_indices], K, b.bbx_lurb[0].numpy())
    assert (labels != 0).sum() == contact_inside.sum() > 0
    assert set(np.unique(labels[labels != 0])) <= set(person.scene_contact_labels.tolist())


def test_targets_peak_at_the_projected_pelvis_and_round_trip_the_depth(batch):
    root, K, bbx = batch.root_camera[0].double(), batch.K[0], batch.bbx_lurb[0]
    uv = (K @ root)[:2] / root[2]
    cell = torch.round((uv - bbx[:2]) / (bbx[2] - bbx[0]) * 55).long().clamp(1, 54)
    assert batch.pelvis_cell[0].tolist() == cell.tolist()
    heat = batch.pelvis_heatmap[0]
    assert int(heat.argmax()) == int(cell[1] * 56 + cell[0]) and heat.max() == 1.0 and heat.sum() == 4.0
    z = float(batch.pelvis_depth[0]) * float(K[0, 0]) / float(bbx[2] - bbx[0])  # the pipeline's Z = d f_x / w
    assert z == pytest.approx(float(root[2]), rel=1e-6)
    parts = batch.part_heatmaps[0]
    assert parts.shape == (7, 56, 56) and parts.max() == 1.0 and parts.min() == 0.0
    touched = {int(k) + 1 for k in torch.nonzero(parts.sum(dim=(1, 2))).reshape(-1)}
    assert touched <= set(batch.frustum_labels[0].unique().tolist()) - {0}


def test_make_batch_is_deterministic_given_the_rng(data, body, batch):
    scene, sample = data
    again = make_batch([sample], {scene.scene_id: scene}, body, rng=np.random.default_rng(0), augment=True)
    other = make_batch([sample], {scene.scene_id: scene}, body, rng=np.random.default_rng(1), augment=True)
    assert torch.equal(again.crops, batch.crops) and torch.equal(again.bbx_lurb, batch.bbx_lurb)
    assert torch.equal(again.frustum_points[0], batch.frustum_points[0])
    assert not torch.equal(other.bbx_lurb, batch.bbx_lurb)


def test_item_transform_and_collator_for_data_loaders(data, body, batch):
    """Augmentation drawn from (seed, epoch, key): the same items whichever worker reads the sample."""
    import pickle

    from sahmr_ros.training import ItemCollator, ItemTransform, sample_rng

    scene, sample = data
    scenes = {scene.scene_id: scene}
    transform = pickle.loads(pickle.dumps(ItemTransform(seed=3)))
    collate = ItemCollator(body)
    got = collate([transform(sample, scenes), []])
    ref = make_batch([sample], scenes, body, rng=sample_rng(3, 0, sample.key), augment=True)
    assert torch.equal(got.crops, ref.crops) and torch.equal(got.pelvis_heatmap, ref.pelvis_heatmap)
    transform.epoch = 1
    assert not torch.equal(collate([transform(sample, scenes)]).bbx_lurb, ref.bbx_lurb)
    assert collate([[], []]) is None
    plain = ItemTransform(augment=False)(sample, scenes)[0]
    assert np.array_equal(plain.bbx_lurb.numpy(), square_crop_boxes(sample.persons[0].box_xyxy[None])[0])


# --- noise and hooks ----------------------------------------------------------------------------------
def test_noisy_replacement_only_replaces_far_or_non_finite_estimates():
    gt = torch.tensor([[0.0, 0.0, 3.0], [1.0, 0.0, 4.0], [0.0, 1.0, 5.0], [0.0, 0.0, 2.0]])
    est = gt + torch.tensor([[0.0, 0.0, 0.49], [0.0, 0.6, 0.0], [float("nan"), 0.0, 0.0], [0.3, 0.3, 0.3]])
    out, far = noisy_replacement(est, gt, 0.08, np.random.default_rng(5))
    noise = np.random.default_rng(5).standard_normal((4, 3))
    assert far.tolist() == [False, True, True, True]  # |(0.3, 0.3, 0.3)| = 0.52 > 0.5
    assert torch.equal(out[0], est[0])
    assert torch.allclose(out[far], gt[far] + 0.08 * torch.from_numpy(noise[far.numpy()]).float())


def test_flipped_root_pass_leaves_the_unflipped_outputs_unchanged(batch, body):
    model = _model(body).eval()
    crops = torch.cat([batch.crops, batch.crops.flip(0).flip(-2)])  # two different crops
    bbx, K = batch.bbx_lurb.expand(2, 4), batch.K.expand(2, 3, 3)
    with torch.no_grad():
        plain = model.rcnet.estimate_root(crops, bbx, K)
        both = model.rcnet.estimate_root(crops, bbx, K, with_flipped=True)
        mirrored = model.rcnet.estimate_root(crops.flip(-1), bbx, K)
    assert plain.part_heatmaps_flipped is None
    assert torch.equal(plain.root_camera, both.root_camera)
    assert torch.allclose(plain.pelvis_heatmap, both.pelvis_heatmap, atol=1e-5)
    assert torch.allclose(both.part_heatmaps_flipped, mirrored.part_heatmaps, atol=1e-5)
    # the flipped target mirrors the columns and swaps left / right parts
    assert torch.equal(flip_part_heatmaps(batch.part_heatmaps)[:, 1], batch.part_heatmaps[:, 0].flip(-1))


def test_training_step_checks_its_stage(batch, body):
    with pytest.raises(InputError, match="stage"):
        training_step(_model(body), batch, "all", np.random.default_rng(0))


def test_loss_weight_overrides_change_only_their_term_and_a_zero_flip_weight_skips_the_flipped_pass(batch, body):
    model = _model(body)
    model.rcnet.contact_net = _DenseContactNet()
    official = loss_weights("rcnet")

    def step(weights=None):
        torch.manual_seed(0)
        with torch.no_grad():
            return training_step(model, batch, "rcnet", np.random.default_rng(1), weights)

    base, changed = step(), step({"pelvis_heatmap": 10.0, "part_heatmaps": 0.05})
    for name in official:
        assert torch.allclose(base[name], changed[name]), name
    # one person: the loss is the weighted sum of the terms
    assert torch.allclose(base["loss"], sum(w * base[k] for k, w in official.items()), rtol=1e-5)
    expect = sum({"pelvis_heatmap": 10.0, "part_heatmaps": 0.05}.get(k, w) * base[k] for k, w in official.items())
    assert torch.allclose(changed["loss"], expect, rtol=1e-5)
    # without the flipped term the trunk runs on the B crops only (batch norm then sees other statistics)
    unflipped = step({"part_heatmaps_flip": 0.0})
    assert "part_heatmaps_flip" not in unflipped
    assert torch.allclose(unflipped["loss"], sum(w * unflipped[k] for k, w in official.items()
                                                 if k != "part_heatmaps_flip"), rtol=1e-5)
    with pytest.raises(InputError, match="loss_weights.vertices: stage 'rcnet' has no such loss term"):
        loss_weights("rcnet", {"vertices": 1.0})


# --- steps --------------------------------------------------------------------------------------------
def test_rcnet_stage_with_a_dense_contact_net_trains(batch, body):
    """L_RC's wiring (features -> voxels -> offsets, logits, refined root) independent of the sparse backend."""
    model = _model(body)
    model.rcnet.contact_net = _DenseContactNet()
    losses, grads, terms = _run_steps(model, batch, "rcnet")
    assert set(terms) == {"pelvis_heatmap", "pelvis_depth", "part_heatmaps", "part_heatmaps_flip", "voxel_contact",
                          "voxel_offset", "refined_root", "loss"}
    _check_grads(model, grads, "rcnet")
    assert grads["rcnet.contact_net.mlp.0.weight"].abs().sum() > 0
    assert grads["rcnet.root_net.out_conv.weight"][C.ROOT_NET_FEATURE_CHANNELS].abs().sum() > 0  # via the voxels
    assert losses[-1] < losses[0], losses


def test_training_step_under_bf16_autocast_keeps_losses_in_float32(batch, body):
    model = _model(body)
    model.rcnet.contact_net = _DenseContactNet()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = training_step(model, batch, "rcnet", np.random.default_rng(1))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values()), terms
    terms["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for p in model.rcnet.parameters() if p.grad is not None)


def test_rcnet_stage_trains_through_the_sparse_cnn(batch, body):
    model = _model(body)
    reason = _sparse_backward_error(model)
    if reason is not None:
        pytest.skip(f"the sparse CNN has no CPU backward here (spconv's does not run; the torch backend of "
                    f"networks/sparse.py is missing): {reason}")
    losses, grads, _ = _run_steps(model, batch, "rcnet", steps=2)
    _check_grads(model, grads, "rcnet")
    assert grads["rcnet.contact_net.classifier.0.weight"].abs().sum() > 0
    assert losses[-1] < losses[0], losses


def test_mesh_stage_trains_with_rcnet_frozen(batch, body):
    model = _model(body)
    rcnet_before = {k: v.clone() for k, v in model.rcnet.state_dict().items()}
    losses, grads, terms = _run_steps(model, batch, "mesh")
    assert set(terms) == {"vertices", "joints", "contact_points", "vertices_camera", "loss"}
    _check_grads(model, grads, "mesh")
    assert not model.rcnet.training and model.mesh_network.training
    assert all(torch.equal(v, model.rcnet.state_dict()[k]) for k, v in rcnet_before.items())  # BN stats too
    assert losses[-1] < losses[0], losses


def test_joint_stage_trains_and_is_deterministic(batch, body):
    model = _model(body)
    if _sparse_backward_error(model) is not None:
        model.rcnet.contact_net = _DenseContactNet()  # the sparse variant is covered (or skipped) above
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    losses, grads, terms = _run_steps(model, batch, "joint", steps=2)
    assert len(terms) == 12
    _check_grads(model, grads, "joint")
    assert losses[-1] < losses[0], losses
    model.load_state_dict(snapshot)
    torch.manual_seed(0)
    first = training_step(model, batch, "joint", np.random.default_rng(1))
    assert first["loss"].item() == losses[0]
