"""Training batches: one item per annotated person, cropped and augmented as the official data loader.

For each person of a :class:`~sahmr_ros.data.sample.Sample`:

1. the square crop box (official ``squared_crop_and_resize``): centre = box centre, half size =
   ``max(w, h) / 2 * scale``; with ``augment`` the centre moves by ``U(-1, 1) * center_jitter_px`` on
   each axis and ``scale = 1 + 0.15 + U(0, 1) * zoom`` (official ``bbx_center`` 10 px on RICH's
   quarter-resolution images, ``bbx_zoom`` 0.4); without, ``scale = 1.15`` (the pipeline's crop);
2. the 224 x 224 crop through :func:`sahmr_ros.geometry.crop_images`, the pipeline's own crop, from the
   image the pipeline would get (undistorted when the sample has lens distortion);
3. ground truth in the camera frame (root = H36M pelvis, 14 joints, 6890 vertices) and the image
   targets of :mod:`~sahmr_ros.training.targets` for that crop box;
4. the scene points in the crop box's frustum (0.5 - 12.5 m), camera frame, with their ground-truth
   contact labels (the sample's ``scene_contact_indices / labels``). The training step selects the ROI
   among them around its anchor, which depends on the prediction.

Horizontal flip: the official training flips no sample. With ``train_extra_flip`` (RCNet training) it
runs the root network a second time on the mirrored crop and supervises only that pass's part heatmaps,
against the mirrored, left/right-swapped target (:func:`~sahmr_ros.training.targets.flip_part_heatmaps`,
applied in the training step). Nothing else is mirrored.

Frames: camera optical (x right, y down, z forward), metres; boxes and K in full-image pixels.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, fields
from typing import Mapping, Sequence

import numpy as np
import torch

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.geometry import crop_images, in_crop_frustum, invert_transform, transform_points
from sahmr_ros.training.targets import (
    heatmap_cell,
    part_heatmap_target,
    pelvis_depth_target,
    pelvis_heatmap_target,
)

__all__ = ["TrainItem", "TrainBatch", "make_items", "collate_items", "make_batch", "augmented_crop_boxes",
           "sample_rng", "ItemTransform", "ItemCollator", "PROX_EXCLUDED_PARTS", "CENTER_JITTER_PX", "ZOOM_RANGE"]

CENTER_JITTER_PX = 10.0  # official bbx_center: +-10 px on RICH images at quarter resolution (1028 x 752)
ZOOM_RANGE = 0.4  # official bbx_zoom: half size x (1 + 0.15 + U(0, 1) * 0.4)
PROX_EXCLUDED_PARTS = (3, 4)  # PROX ground truth has no hand contacts (official skip_hand)


@dataclass
class TrainItem:
    """One annotated person, ready for the networks (all tensors on the CPU).

    Attributes:
        key: ``"<sample key>/<person index>"``.
        crop: (3, 224, 224) float32 RGB in [0, 1].
        bbx_lurb: (4,) float64 square crop box, full-image pixels.
        K: (3, 3) float64 full-image intrinsics (of the undistorted image).
        root_camera: (3,) float32 ground-truth H36M pelvis, camera frame, metres.
        joints14_camera: (14, 3) float32 ground-truth H36M joints, metres.
        vertices_camera: (6890, 3) float32 ground-truth vertices, metres.
        pelvis_cell: (2,) int64 ``(x, y)`` target cell on the 56 x 56 grid (1..54).
        pelvis_heatmap: (56, 56) float32 kernel target.
        pelvis_depth: () float32 normalised depth target ``Z * w_bbox / f_x``.
        part_heatmaps: (7, 56, 56) float32 auxiliary part-contact heatmap target.
        frustum_points: (N, 3) float32 scene points in the crop frustum, camera frame, metres.
        frustum_labels: (N,) int64 their ground-truth contact labels 0..7.
        excluded_parts: parts the data does not annotate (PROX: the hands, 3 and 4).
    """

    key: str
    crop: torch.Tensor
    bbx_lurb: torch.Tensor
    K: torch.Tensor
    root_camera: torch.Tensor
    joints14_camera: torch.Tensor
    vertices_camera: torch.Tensor
    pelvis_cell: torch.Tensor
    pelvis_heatmap: torch.Tensor
    pelvis_depth: torch.Tensor
    part_heatmaps: torch.Tensor
    frustum_points: torch.Tensor
    frustum_labels: torch.Tensor
    excluded_parts: tuple[int, ...] = ()


@dataclass
class TrainBatch:
    """B persons (:class:`TrainItem` fields stacked) and the body data the losses need.

    Attributes:
        keys: B item keys.
        crops: (B, 3, 224, 224) float32 in [0, 1].
        bbx_lurb: (B, 4) float64; K: (B, 3, 3) float64.
        root_camera: (B, 3) float32; joints14_camera: (B, 14, 3) float32;
            vertices_camera: (B, 6890, 3) float32: ground truth, camera frame, metres.
        pelvis_cell: (B, 2) int64; pelvis_heatmap: (B, 56, 56); pelvis_depth: (B,);
            part_heatmaps: (B, 7, 56, 56): image targets, float32.
        frustum_points: B tensors (N_b, 3) float32, camera frame; frustum_labels: B tensors (N_b,) int64.
        excluded_parts: B tuples of parts without ground truth.
        vertex_parts: (6890,) int64 contact part of each vertex (``BodyAssets.part_ids_6890``).
        j_regressor_h36m: (17, 6890) float32 H36M regressor (row 0: the pelvis).
    """

    keys: list[str]
    crops: torch.Tensor
    bbx_lurb: torch.Tensor
    K: torch.Tensor
    root_camera: torch.Tensor
    joints14_camera: torch.Tensor
    vertices_camera: torch.Tensor
    pelvis_cell: torch.Tensor
    pelvis_heatmap: torch.Tensor
    pelvis_depth: torch.Tensor
    part_heatmaps: torch.Tensor
    frustum_points: list[torch.Tensor]
    frustum_labels: list[torch.Tensor]
    vertex_parts: torch.Tensor
    j_regressor_h36m: torch.Tensor
    excluded_parts: list[tuple[int, ...]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def to(self, device: torch.device | str) -> "TrainBatch":
        """Return a copy with every tensor on ``device`` (dtypes kept)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(device)
            elif isinstance(v, list) and v and isinstance(v[0], torch.Tensor):
                v = [t.to(device) for t in v]
            out[f.name] = v
        return TrainBatch(**out)


def augmented_crop_boxes(boxes_xyxy: np.ndarray, rng: np.random.Generator | None, augment: bool,
                         center_jitter_px: float = CENTER_JITTER_PX, zoom: float = ZOOM_RANGE) -> np.ndarray:
    """Square crop boxes with the official augmentation (``squared_crop_and_resize``).

    Args:
        boxes_xyxy: (P, 4) person boxes, pixels.
        rng: draws the jitter and zoom (needed when ``augment``).
        augment: False gives the pipeline's boxes (:func:`sahmr_ros.geometry.square_crop_boxes`).
        center_jitter_px: centre moves by ``U(-1, 1) * center_jitter_px`` per axis.
        zoom: half size = ``max(w, h) / 2 * (1.15 + U(0, 1) * zoom)``.

    Returns:
        (P, 4) float64 ``bbx_lurb``.
    """
    b = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    centre = (b[:, :2] + b[:, 2:]) / 2
    scale = np.full(len(b), C.CROP_SCALE)
    if augment:
        if rng is None:
            raise InputError("rng: augmentation needs a numpy Generator (np.random.default_rng(seed))")
        for i in range(len(b)):  # per box: centre x, y then zoom, as the official draws them
            centre[i] += center_jitter_px * (rng.random(2) * 2 - 1)
            scale[i] += zoom * rng.random()
    half = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]) / 2 * scale
    return np.concatenate([centre - half[:, None], centre + half[:, None]], axis=1)


def _excluded_parts(sample) -> tuple[int, ...]:
    return PROX_EXCLUDED_PARTS if str(sample.extra.get("dataset", "")).lower().startswith("prox") else ()


def make_items(sample, scene, *, rng: np.random.Generator | None = None, augment: bool = False,
               center_jitter_px: float = CENTER_JITTER_PX, zoom: float = ZOOM_RANGE) -> list[TrainItem]:
    """Turn one sample into one :class:`TrainItem` per annotated person.

    Persons whose pelvis is not in front of the camera (z <= 0) are left out.

    Args:
        sample: a :class:`~sahmr_ros.data.sample.Sample`.
        scene: its :class:`~sahmr_ros.data.sample.Scene` (map-frame cloud indexed by the sample's
            ``scene_contact_indices``).
        rng: numpy Generator for the augmentation (required when ``augment``).
        augment: box centre jitter and zoom (training); False: the pipeline's crop (validation).
        center_jitter_px, zoom: see :func:`augmented_crop_boxes`.

    Returns:
        The items, in person order.
    """
    from sahmr_ros.evaluation.evaluate import frame_inputs  # undistorted image, as the pipeline gets it

    persons = [p for p in sample.persons if p.root_camera[2] > 0]
    if not persons:
        return []
    image, K = frame_inputs(sample)
    bbx = augmented_crop_boxes(np.stack([p.box_xyxy for p in persons]), rng, augment, center_jitter_px, zoom)
    img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    bbx_t = torch.from_numpy(bbx)
    crops = crop_images(img, bbx_t)  # (P, 3, 224, 224)
    P = len(persons)
    K_t = torch.from_numpy(np.asarray(K, np.float64)).expand(P, 3, 3).contiguous()
    roots = torch.from_numpy(np.stack([p.root_camera for p in persons]).astype(np.float64))
    cells = heatmap_cell(roots, K_t, bbx_t)
    heatmaps = pelvis_heatmap_target(cells)
    depths = pelvis_depth_target(roots, K_t, bbx_t).to(torch.float32)

    cloud_camera = transform_points(invert_transform(sample.T_map_camera), scene.cloud.astype(np.float64))
    excluded = _excluded_parts(sample)
    items = []
    for i, p in enumerate(persons):
        labels_all = np.zeros(len(cloud_camera), np.int64)
        labels_all[p.scene_contact_indices.astype(np.int64)] = p.scene_contact_labels
        inside = in_crop_frustum(cloud_camera, K, bbx[i])
        points = torch.from_numpy(cloud_camera[inside].astype(np.float32))
        labels = torch.from_numpy(labels_all[inside])
        items.append(TrainItem(
            key=f"{sample.key}/{sample.persons.index(p)}",
            crop=crops[i],
            bbx_lurb=bbx_t[i],
            K=K_t[i],
            root_camera=roots[i].to(torch.float32),
            joints14_camera=torch.from_numpy(np.asarray(p.joints14_camera, np.float32)),
            vertices_camera=torch.from_numpy(np.asarray(p.vertices_camera, np.float32)),
            pelvis_cell=cells[i],
            pelvis_heatmap=heatmaps[i],
            pelvis_depth=depths[i],
            part_heatmaps=part_heatmap_target(points.double(), labels, K_t[i], bbx_t[i]),
            frustum_points=points,
            frustum_labels=labels,
            excluded_parts=excluded,
        ))
    return items


def collate_items(items: Sequence[TrainItem], body) -> TrainBatch:
    """Stack items into a :class:`TrainBatch` (a DataLoader ``collate_fn`` with ``functools.partial``).

    Args:
        items: the persons (at least one).
        body: :class:`sahmr_ros.body.BodyAssets` (part ids and H36M regressor for the losses).
    """
    if not items:
        raise InputError("items: a training batch needs at least one annotated person")

    def stack(name: str) -> torch.Tensor:
        return torch.stack([getattr(it, name) for it in items])

    return TrainBatch(
        keys=[it.key for it in items],
        crops=stack("crop"),
        bbx_lurb=stack("bbx_lurb"),
        K=stack("K"),
        root_camera=stack("root_camera"),
        joints14_camera=stack("joints14_camera"),
        vertices_camera=stack("vertices_camera"),
        pelvis_cell=stack("pelvis_cell"),
        pelvis_heatmap=stack("pelvis_heatmap"),
        pelvis_depth=stack("pelvis_depth"),
        part_heatmaps=stack("part_heatmaps"),
        frustum_points=[it.frustum_points for it in items],
        frustum_labels=[it.frustum_labels for it in items],
        vertex_parts=torch.as_tensor(np.asarray(body.part_ids_6890), dtype=torch.int64),
        j_regressor_h36m=torch.as_tensor(np.asarray(body.j_regressor_h36m), dtype=torch.float32),
        excluded_parts=[it.excluded_parts for it in items],
    )


def make_batch(samples: Sequence, scenes: Mapping, body, *, rng: np.random.Generator | None = None,
               augment: bool = False, center_jitter_px: float = CENTER_JITTER_PX,
               zoom: float = ZOOM_RANGE) -> TrainBatch:
    """Make one training batch from samples: one item per annotated person (:func:`make_items`).

    Args:
        samples: :class:`~sahmr_ros.data.sample.Sample` objects.
        scenes: ``scene_id -> Scene`` (a dict or a :class:`~sahmr_ros.data.dataset.SceneCache`).
        body: :class:`sahmr_ros.body.BodyAssets`.
        rng: numpy Generator (required when ``augment``); the same state gives the same batch.
        augment: the official box jitter and zoom.
        center_jitter_px, zoom: see :func:`augmented_crop_boxes`.

    Raises:
        InputError: no sample has an annotated person.
    """
    items = []
    for s in samples:
        items.extend(make_items(s, scenes[s.scene_id], rng=rng, augment=augment,
                                center_jitter_px=center_jitter_px, zoom=zoom))
    return collate_items(items, body)


def sample_rng(seed: int, epoch: int, key: str) -> np.random.Generator:
    """Return the augmentation generator of one sample in one epoch.

    It depends on ``(seed, epoch, key)`` only, not on which DataLoader worker or DDP rank reads the
    sample, nor on the order: resumed and distributed runs augment every sample as an uninterrupted
    single-process run.
    """
    digest = hashlib.sha256(f"{int(seed)}/{int(epoch)}/{key}".encode()).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint32))


@dataclass
class ItemTransform:
    """Dataset transform (``ShardStream`` / ``ShardIndex`` ``transform=``): a sample -> its :class:`TrainItem` list.

    The augmentation of a sample is drawn from :func:`sample_rng` ``(seed, epoch, sample.key)``. Set
    ``epoch`` before each epoch's iterator is created (DataLoader workers copy the transform then).

    Attributes:
        seed: augmentation seed.
        augment: box jitter and zoom (False: the pipeline's crop, for validation).
        epoch: current epoch.
        center_jitter_px, zoom: see :func:`augmented_crop_boxes`.
    """

    seed: int = 0
    augment: bool = True
    epoch: int = 0
    center_jitter_px: float = CENTER_JITTER_PX
    zoom: float = ZOOM_RANGE

    def __call__(self, sample, scenes) -> list[TrainItem]:
        rng = sample_rng(self.seed, self.epoch, sample.key) if self.augment else None
        return make_items(sample, scenes[sample.scene_id], rng=rng, augment=self.augment,
                          center_jitter_px=self.center_jitter_px, zoom=self.zoom)


class ItemCollator:
    """DataLoader ``collate_fn``: lists of :class:`TrainItem` (one list per sample) -> one :class:`TrainBatch`.

    Returns None when no sample of the batch has an annotated person (the caller skips that step).

    Args:
        body: :class:`sahmr_ros.body.BodyAssets` (its part ids and H36M regressor go into every batch).
    """

    def __init__(self, body):
        self.body = body

    def __call__(self, batch: Sequence) -> TrainBatch | None:
        items = [it for entry in batch for it in (entry if isinstance(entry, (list, tuple)) else [entry])]
        return collate_items(items, self.body) if items else None
