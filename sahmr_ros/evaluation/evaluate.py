"""``sahmr eval``: run a pipeline over a data split and measure every person against the ground truth.

Two paths over the same frames:

* :func:`evaluate`: the :class:`~sahmr_ros.pipeline.Pipeline` directly, one batched ``process`` call per
  image with the ground-truth boxes of all its people;
* :func:`evaluate_bags`: the node's code path (:func:`sahmr_ros.ros.bag.run_bag`) on the split's
  rosbag2 files (layout in :mod:`sahmr_ros.evaluation.bags`), the published ``HumanMeshArray``
  messages read back and evaluated like the direct results.

Both return an :class:`EvalResult`: one row per ground-truth person (:data:`ROW_COLUMNS`), every metric
of :mod:`sahmr_ros.evaluation.metrics` computed per person. :mod:`sahmr_ros.evaluation.report` writes
the rows, the summary and the plots.

Data: a directory written by ``sahmr synth`` (``manifest.json`` + shards, :class:`~sahmr_ros.data.ShardIndex`)
or the official RICH / PROX evaluation data (:func:`~sahmr_ros.data.open_official`). A data set records
its body model: samples of a shard directory carry ``extra["body_model"]`` (``"synthetic"`` for the
synthetic body, ``"smpl"`` for SMPL; a top-level ``"body_model"`` in the manifest is read first); the
official data is SMPL. A pipeline whose body model differs is refused (:func:`check_body_model`): its
meshes and the ground truth would not share a body.

Protocol, as the official evaluation (``../shared/SPEC.md`` section 7): ground-truth boxes; map (world)
frame; joints and pelvis regressed from each mesh with the data's H36M regressor; PenE / ConFE from the
scene's SDF grid (ConFE without vertex contacts where the data has none, PROX); per-person values
averaged afterwards. The pipeline should see the data's scene cloud as it is (``PipelineConfig(
scene_pitch=None)``, as ``sahmr eval`` builds it): the official scenes are pre-voxelised clouds, and
contact precision / recall is counted over the points of that cloud, where the ground-truth labels live.

No ROS imports here; ``--bag`` imports :mod:`sahmr_ros.ros` lazily.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from scipy.spatial import cKDTree

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError
from sahmr_ros.evaluation.metrics import (
    contact_counts,
    labels_on_scene_points,
    pose_errors,
    root_error,
    scene_errors,
)
from sahmr_ros.geometry import transform_points

__all__ = [
    "BODY_MODELS",
    "BODY_MODEL_KEY",
    "DISTANCE_BANDS_M",
    "METRIC_COLUMNS",
    "ROW_COLUMNS",
    "STATUSES",
    "EvalData",
    "EvalResult",
    "FrameView",
    "check_body_model",
    "data_kind",
    "distance_band",
    "evaluate",
    "evaluate_bags",
    "evaluate_frame",
    "frame_inputs",
    "open_data",
    "pipeline_body_model",
]

BODY_MODEL_KEY = "body_model"
BODY_MODELS = ("smpl", "synthetic")
DISTANCE_BANDS_M = (2.0, 4.0, 6.0, 8.0)  # upper edges; beyond the last: "> 8 m"
PART_NAMES = C.CONTACT_PART_NAMES[1:]
STATUSES = ("ok", "non_finite", "skipped", "missing")
METRIC_COLUMNS = ("g_mpjpe_mm", "g_mpve_mm", "mpjpe_mm", "mpve_mm", "pa_mpjpe_mm", "pene_m", "confe_m",
                  "root_error_mm", "coarse_root_error_mm")
COUNT_COLUMNS = tuple(f"contact_{kind}_{part}" for part in PART_NAMES for kind in ("tp", "pred", "gt"))
ROW_COLUMNS = (
    "sample", "scene", "person", "category", "distance_m", "distance_band", "visible_fraction", "gt_flags",
    "status", "flags", "skip_reason",
    *METRIC_COLUMNS,
    "contact_precision", "contact_recall", "contact_f1", "num_contact_points", "num_roi_voxels", "frame_ms",
    *COUNT_COLUMNS,
)
_M_TO_MM = 1000.0
_BOX_MATCH_PX = 0.5  # a published box equals its ground-truth box up to float32 rounding
_KEEP_VIEWS = 16  # estimates of the first samples kept for the figures; the others are recomputed


# --- data --------------------------------------------------------------------------------------------
def data_kind(root: str | Path) -> str:
    """Say what a data directory holds: ``"shards"`` (``sahmr synth``), ``"rich"`` or ``"prox"`` (official).

    Raises:
        InputError: not a directory, or neither layout.
    """
    from sahmr_ros.data.official import detect_official
    from sahmr_ros.data.shards import MANIFEST_NAME

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data {root}: not a directory; expected a data directory (sahmr synth output with "
                         f"{MANIFEST_NAME}, or the official RICH / PROX evaluation data)")
    if (root / MANIFEST_NAME).is_file():
        return "shards"
    kind = detect_official(root)
    if kind is None:
        raise InputError(f"--data {root}: not a data directory: no {MANIFEST_NAME} (sahmr synth) and no official "
                         "RICH / PROX evaluation data (sahmr_support/test_split/meta/test3116.npy or "
                         "sahmr_support/meta/mosh_mesh_test.pkl)")
    return kind


def pipeline_body_model(model_dir: str | Path) -> str:
    """Body model of a model directory: ``"synthetic"`` when it holds the synthetic body, else ``"smpl"``."""
    return "synthetic" if (Path(model_dir) / C.SYNTHETIC_MARKER_FILENAME).is_file() else "smpl"


def check_body_model(data_body: str | None, pipeline_body: str, where: str) -> None:
    """Refuse to evaluate a pipeline on data made with another body model.

    Args:
        data_body: the data's body model (``"synthetic"``, ``"smpl"``; None: not recorded).
        pipeline_body: the pipeline's (:func:`pipeline_body_model`; ``--demo`` is ``"synthetic"``).
        where: the data directory, named in the message.

    Raises:
        InputError: one line naming both body models and what to pass instead.
    """
    if data_body is None:
        raise InputError(f"{where}: the data does not record its body model (each sample's extra"
                         f"[{BODY_MODEL_KEY!r}] must be one of {', '.join(BODY_MODELS)}); regenerate it with "
                         "sahmr synth")
    if data_body not in BODY_MODELS:
        raise InputError(f"{where}: unknown body model {data_body!r} (expected one of {', '.join(BODY_MODELS)})")
    if data_body != pipeline_body:
        fix = ("use --demo, or --checkpoint CK with --model-dir holding the synthetic body (sahmr demo writes one "
               "to demo_out/synthetic_model)" if data_body == "synthetic"
               else "use --checkpoint CK with --model-dir holding SMPL and the official files (models/README.md)")
        raise InputError(f"body model mismatch: {where} was made with the {data_body} body, the pipeline uses the "
                         f"{pipeline_body} body; its meshes cannot be compared with this ground truth; {fix}")


@dataclass
class EvalData:
    """An opened data split: samples by position, scenes by id, and what made the data.

    Attributes:
        root: the data directory.
        kind: ``"shards"``, ``"rich"`` or ``"prox"``.
        split: the split evaluated.
        dataset: :class:`~sahmr_ros.data.ShardIndex` or an official reader (same interface).
        body_model: ``"synthetic"`` or ``"smpl"`` (None: not recorded).
    """

    root: Path
    kind: str
    split: str
    dataset: Any
    body_model: str | None
    _positions: dict[str, int] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int):
        """Decode sample ``index`` (:class:`~sahmr_ros.data.Sample`)."""
        return self.dataset[index]

    def scene(self, scene_id: str):
        """Return the :class:`~sahmr_ros.data.Scene` with this id (cached by the dataset)."""
        return self.dataset.scene(scene_id)

    def position(self, key: str) -> int:
        """Position of the sample with this key.

        Raises:
            InputError: no such sample in the split.
        """
        if self._positions is None:
            self._positions = {self.dataset.key(i): i for i in range(len(self.dataset))}
        if key not in self._positions:
            raise InputError(f"{self.root}: no sample {key!r} in split {self.split!r}")
        return self._positions[key]


def _recorded_body_model(dataset, manifest: dict) -> str | None:
    value = manifest.get(BODY_MODEL_KEY)
    if value is None and len(dataset):
        value = dataset[0].extra.get(BODY_MODEL_KEY)
    return None if value is None else str(value)


def open_data(root: str | Path, split: str = "test", model_dir: str | Path | None = None,
              smplx_to_smpl: str | Path | None = None, expect_body: str | None = None) -> EvalData:
    """Open a data directory's split for evaluation, checking the body model first.

    Args:
        root: ``sahmr synth`` output, or ``RICH`` / ``PROX/quantitative`` official data.
        split: the split to evaluate (official data has only ``"test"``).
        model_dir: official data only: holds the H36M regressor and the part ids (models/README.md).
        smplx_to_smpl: official data only: the SMPL-X -> SMPL transfer file (default under model_dir).
        expect_body: the pipeline's body model; refused when the data's differs (None: no check).

    Raises:
        InputError: not a data directory, an empty split, a body model mismatch, unreadable files.
    """
    from sahmr_ros.data.dataset import ShardIndex

    root = Path(root)
    kind = data_kind(root)
    if kind == "shards":
        dataset = ShardIndex(root, split=split)
        manifest = dataset.reader.manifest
        if len(dataset) == 0:
            splits = sorted(manifest.get("counts", {}).get("per_split", {}))
            raise InputError(f"--data {root}: split {split!r} is empty (the data holds splits: "
                             f"{', '.join(repr(s) for s in splits) or 'none'}); pass --split")
        body = _recorded_body_model(dataset, manifest)
        if expect_body is not None:
            check_body_model(body, expect_body, str(root))
        return EvalData(root, kind, split, dataset, body)
    body = "smpl"  # official RICH / PROX ground truth: SMPL-X meshes moved to SMPL topology
    if expect_body is not None:
        check_body_model(body, expect_body, str(root))
    if split != "test":
        raise InputError(f"--data {root}: split {split!r} is empty (official {kind.upper()} data has only the "
                         "'test' split)")
    if model_dir is None:
        raise InputError(f"--data {root}: official {kind.upper()} data needs --model-dir (H36M regressor, part ids)")
    from sahmr_ros.data.official import open_official

    dataset = open_official(root, model_dir, smplx_to_smpl)
    if len(dataset) == 0:
        raise InputError(f"--data {root}: the official {kind.upper()} test split lists no sample")
    return EvalData(root, kind, split, dataset, body)


# --- one frame ---------------------------------------------------------------------------------------
def frame_inputs(sample) -> tuple[np.ndarray, np.ndarray]:
    """Return the image and K the pipeline gets: the sample's image, undistorted (keeping K) when it has distortion."""
    coeffs = np.asarray(sample.distortion_coeffs, np.float64)
    if sample.distortion_model == "none" or not np.any(coeffs):
        return sample.image, sample.K
    from sahmr_ros.io import Camera, undistort_image

    width, height = sample.image_size
    camera = Camera(K=sample.K, distortion=coeffs, width=width, height=height, model=sample.distortion_model,
                    source=f"sample {sample.key}")
    return undistort_image(sample.image, camera)


def distance_band(distance_m: float) -> str:
    """Band of a camera distance: ``"0-2 m"``, ``"2-4 m"``, ... , ``"> 8 m"`` (:data:`DISTANCE_BANDS_M`)."""
    lower = 0.0
    for upper in DISTANCE_BANDS_M:
        if distance_m < upper:
            return f"{lower:g}-{upper:g} m"
        lower = upper
    return f"> {lower:g} m"


def distance_bands() -> list[str]:
    """All band names, nearest first."""
    return [distance_band(u - 1e-9) for u in DISTANCE_BANDS_M] + [distance_band(math.inf)]


class _SceneIndex:
    """A scene's cloud (float64) and its k-d tree, built once per scene."""

    def __init__(self, scene):
        self.scene_id = scene.scene_id
        self.cloud = np.asarray(scene.cloud, np.float64)
        self.tree = cKDTree(self.cloud) if len(self.cloud) else None
        # contact points are points of the cloud the pipeline used; allow a voxel-mean displacement
        self.tolerance = max(1e-3, math.sqrt(3.0) * float(scene.pitch))


def _nan_row(sample, i: int, gt) -> dict:
    distance = float(np.linalg.norm(gt.root_camera))
    row = {c: math.nan for c in ROW_COLUMNS}
    row.update(sample=sample.key, scene=sample.scene_id, person=i, category=gt.category, distance_m=distance,
               distance_band=distance_band(distance), visible_fraction=float(gt.visible_fraction),
               gt_flags="|".join(gt.flags), status="", flags="", skip_reason="", num_contact_points=0,
               num_roi_voxels=-1)
    for c in COUNT_COLUMNS:
        row[c] = 0
    return row


def _contact_row(index: _SceneIndex, gt, pred) -> dict:
    """Contact counts of one person over the scene points (only the points either side labels matter)."""
    cps = np.asarray(pred.contact_points_map, np.float64).reshape(-1, 3)
    labels = np.asarray(pred.contact_labels, np.int64).reshape(-1)
    gt_idx = np.asarray(gt.scene_contact_indices, np.int64)
    if index.tree is not None and len(cps):
        _, near = index.tree.query(cps, k=1)
        candidates = np.union1d(gt_idx, near)
    else:
        candidates = gt_idx
    lookup = {int(k): j for j, k in enumerate(candidates)}
    gt_labels = np.zeros(len(candidates), np.int64)
    gt_labels[[lookup[int(k)] for k in gt_idx]] = np.asarray(gt.scene_contact_labels, np.int64)
    pred_labels = labels_on_scene_points(index.cloud[candidates].reshape(-1, 3), cps, labels, index.tolerance)
    counts = contact_counts(pred_labels, gt_labels)
    scores = counts.scores()
    out = {"contact_precision": scores["contact_precision"], "contact_recall": scores["contact_recall"],
           "contact_f1": scores["contact_f1"], "num_contact_points": int(len(cps))}
    for k, part in enumerate(PART_NAMES):
        out[f"contact_tp_{part}"] = int(counts.true_positive[k])
        out[f"contact_pred_{part}"] = int(counts.predicted[k])
        out[f"contact_gt_{part}"] = int(counts.ground_truth[k])
    return out


def evaluate_frame(sample, scene, persons: Sequence[Any], skipped: Sequence[Any], j_regressor,
                   frame_ms: float = math.nan, scene_index: _SceneIndex | None = None) -> list[dict]:
    """Rows (:data:`ROW_COLUMNS`) of every ground-truth person of one sample.

    Args:
        sample: the :class:`~sahmr_ros.data.Sample` (ground truth; persons in box order).
        scene: its :class:`~sahmr_ros.data.Scene` (cloud for contacts, SDF for PenE / ConFE).
        persons: estimates with ``box_index`` (the ground-truth person), ``root_map``, ``vertices_map``,
            ``contact_points_map``, ``contact_labels``, ``flags`` and ``coarse_root_camera`` (None:
            unknown), map frame: :class:`~sahmr_ros.pipeline.PersonResult` or
            :class:`~sahmr_ros.evaluation.bags.BagHuman`.
        skipped: boxes the pipeline skipped (``box_index``, ``reason``).
        j_regressor: (17, 6890) the data's H36M regressor.
        frame_ms: the frame's processing time, copied into each row.
        scene_index: the scene's cached cloud and k-d tree (built here when None).

    Returns:
        One dict per ground-truth person, in person order. ``status``: ``ok`` (every metric computed),
        ``non_finite`` (the estimate holds NaN / inf: no metric), ``skipped`` (the pipeline refused the
        box: ``skip_reason``) or ``missing`` (no estimate came back, e.g. a frame the node dropped).
    """
    index = scene_index if scene_index is not None and scene_index.scene_id == scene.scene_id else _SceneIndex(scene)
    by_box = {int(p.box_index): p for p in persons}
    reasons = {int(s.box_index): str(s.reason) for s in skipped}
    has_vertex_contact = bool(sample.extra.get("has_vertex_contact", True))
    rows = []
    for i, gt in enumerate(sample.persons):
        row = _nan_row(sample, i, gt)
        row["frame_ms"] = float(frame_ms)
        rows.append(row)
        pred = by_box.get(i)
        if pred is None:
            row["status"] = "skipped" if i in reasons else "missing"
            row["skip_reason"] = reasons.get(i, "no estimate came back for this box")
            continue
        row["flags"] = "|".join(pred.flags)
        row["num_roi_voxels"] = int(getattr(pred, "num_roi_voxels", -1))
        if C.FLAG_NON_FINITE in pred.flags:
            row["status"] = "non_finite"
            continue
        row["status"] = "ok"
        pose = pose_errors(pred.vertices_map, gt.vertices_map, j_regressor)
        row.update({f"{k}_mm": float(v) for k, v in pose.items()})
        if scene.sdf is not None:
            mask = np.asarray(gt.vertex_contact, bool) if has_vertex_contact else None
            s = scene_errors(scene.sdf, pred.vertices_map, mask)
            row.update(pene_m=float(s["pene"]), confe_m=float(s["confe"]))
        row["root_error_mm"] = float(root_error(pred.root_map, gt.root_map)) * _M_TO_MM
        coarse = getattr(pred, "coarse_root_camera", None)
        if coarse is not None:
            coarse_map = transform_points(sample.T_map_camera, np.asarray(coarse, np.float64).reshape(1, 3))[0]
            row["coarse_root_error_mm"] = float(root_error(coarse_map, gt.root_map)) * _M_TO_MM
        row.update(_contact_row(index, gt, pred))
    return rows


# --- runs --------------------------------------------------------------------------------------------
@dataclass
class FrameView:
    """One sample with its estimates, for the figures: the image and K the pipeline saw."""

    sample: Any
    scene: Any
    image: np.ndarray
    K: np.ndarray
    persons: list


@dataclass
class EvalResult:
    """What a run produced.

    Attributes:
        rows: one dict per ground-truth person (:data:`ROW_COLUMNS`), in sample order.
        path: ``"pipeline"`` (:func:`evaluate`) or ``"node"`` (:func:`evaluate_bags`).
        num_samples: samples evaluated (images, including those without people).
        wall_s: seconds the run took.
        views: ``views(keys)`` -> {key: :class:`FrameView`} of those samples' estimates again (the
            direct path re-runs the pipeline, the bag path re-reads the output bags).
        notes: lines worth printing (e.g. the bag runs' summaries).
        outputs: extra outputs written (the node's output bags).
    """

    rows: list[dict]
    path: str
    num_samples: int
    wall_s: float
    views: Callable[[Sequence[str]], dict[str, FrameView]]
    notes: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)


def _body_of(sample, data: EvalData) -> None:
    body = sample.extra.get(BODY_MODEL_KEY)
    if data.kind == "shards" and body is not None and data.body_model is not None and body != data.body_model:
        raise InputError(f"{data.root}: sample {sample.key} was made with the {body} body, the data's first sample "
                         f"with the {data.body_model} body; a split must use one body model")


def _run_frame(pipeline, sample, scene_state: dict, data: EvalData):
    """Process one sample (scene latched when it changes); returns (scene, index, image, K, FrameResult)."""
    scene = data.scene(sample.scene_id)
    if scene_state.get("id") != scene.scene_id:
        pipeline.set_scene(scene.cloud)
        scene_state.update(id=scene.scene_id, index=_SceneIndex(scene))
    image, K = frame_inputs(sample)
    boxes = np.array([p.box_xyxy for p in sample.persons], np.float64).reshape(-1, 4)
    return scene, scene_state["index"], image, K, pipeline.process(image, K, sample.T_map_camera, boxes)


def evaluate(data: EvalData, pipeline, j_regressor, *, limit: int | None = None, progress: bool = True) -> EvalResult:
    """Run ``pipeline`` over the split, ground-truth boxes batched per image, and evaluate every person.

    Args:
        data: from :func:`open_data`.
        pipeline: a :class:`~sahmr_ros.pipeline.Pipeline` (or anything with ``set_scene(points)`` and
            ``process(image, K, T_map_camera, boxes)`` returning a ``FrameResult``), best built with
            ``scene_pitch=None`` (module docstring).
        j_regressor: (17, 6890) the data's H36M regressor (the pipeline's body files).
        limit: evaluate the first ``limit`` samples only.
        progress: show a progress bar.
    """
    from tqdm import tqdm

    j_regressor = np.asarray(j_regressor, np.float64)
    count = len(data) if limit is None else max(0, min(int(limit), len(data)))
    rows: list[dict] = []
    state: dict = {}
    kept: dict[str, FrameView] = {}
    started = time.perf_counter()
    bar = tqdm(range(count), desc="sahmr eval", unit="image", disable=not progress, dynamic_ncols=True)
    for i in bar:
        sample = data.sample(i)
        _body_of(sample, data)
        if not sample.persons:
            continue
        scene, index, image, K, frame = _run_frame(pipeline, sample, state, data)
        rows += evaluate_frame(sample, scene, frame.persons, frame.skipped, j_regressor,
                               frame_ms=float(frame.timings_ms.get("total", math.nan)), scene_index=index)
        if len(kept) < _KEEP_VIEWS:  # small runs draw their figures without running any frame again
            kept[sample.key] = FrameView(sample, scene, image, K, list(frame.persons))
        bar.set_postfix(persons=len(rows), refresh=False)
    bar.close()
    wall = time.perf_counter() - started

    def views(keys: Sequence[str]) -> dict[str, FrameView]:
        out, view_state = {}, {}
        for key in keys:
            if key in kept:
                out[key] = kept[key]
                continue
            sample = data.sample(data.position(key))
            scene, _, image, K, frame = _run_frame(pipeline, sample, view_state, data)
            out[key] = FrameView(sample, scene, image, K, list(frame.persons))
        return out

    return EvalResult(rows, "pipeline", count, wall, views)


def _match_boxes(sample, humans: list) -> None:
    """Set each published person's ``box_index`` to the ground-truth person whose box it is (-1: none)."""
    taken: set[int] = set()
    boxes = np.array([p.box_xyxy for p in sample.persons], np.float64).reshape(-1, 4)
    for h in humans:
        h.box_index = -1
        if not len(boxes):
            continue
        diff = np.abs(boxes - np.asarray(h.box_xyxy, np.float64)).max(axis=1)
        for j in np.argsort(diff, kind="stable"):
            if diff[j] > _BOX_MATCH_PX:
                break
            if int(j) not in taken:
                h.box_index = int(j)
                taken.add(int(j))
                break


def evaluate_bags(data: EvalData, pipeline, j_regressor, out_dir: str | Path, *, limit: int | None = None,
                  progress: bool = True, params=None, log: Callable[[str], None] = print,
                  tracking=None) -> EvalResult:
    """Run the split's rosbag2 files through the node's code path and evaluate what it published.

    Each bag of ``DIR/bags/<split>/`` (:mod:`sahmr_ros.evaluation.bags`) goes through
    :func:`sahmr_ros.ros.bag.run_bag` into ``out_dir/bag_outputs/<bag>/``; the ``HumanMeshArray``
    messages are read back, matched to their samples by stamp (``index.json``) and to the ground-truth
    persons by box, and evaluated as :func:`evaluate` does. Persons with no published estimate are
    ``missing``; the message carries no coarse root (its column stays empty).

    Args:
        data, pipeline, j_regressor, limit, progress: as :func:`evaluate` (``limit``: the first frames
            of the index; only the bags holding them are run).
        out_dir: the report directory.
        params: :class:`~sahmr_ros.ros.core.NodeParams` (topics, filters); default: the node's defaults.
        log: where the bag runs' lines go.
        tracking: :class:`~sahmr_ros.tracking.TrackingParams` of every bag; default: the node's defaults
            (smoothed meshes) for a bag of a sequence, no smoothing for a bag of independent frames (a
            scene's single frames show other people from other cameras 0.1 s apart: smoothing over them
            would mix strangers).

    Raises:
        InputError: the split has no bags (says so, and where they belong), or an output exists.
    """
    from tqdm import tqdm

    from sahmr_ros.evaluation.bags import bag_split_dir, read_bag_index, read_humans

    split_dir = bag_split_dir(data.root, data.split)
    if not split_dir.is_dir() or not any(split_dir.iterdir()):
        raise InputError(f"{split_dir}: no rosbag2 files for split {data.split!r}; --bag runs the node's code path "
                         "on the split's bags, which sahmr synth writes to DIR/bags/<split>/ (run without --bag to "
                         "evaluate the pipeline directly)")
    frames = read_bag_index(split_dir)
    if limit is not None:
        frames = frames[:max(0, int(limit))]
    out_root = Path(out_dir) / "bag_outputs"
    if out_root.exists():
        raise InputError(f"{out_root}: exists from an earlier run; choose another -o or delete it")
    from sahmr_ros.ros.bag import run_bag
    from sahmr_ros.ros.core import NodeParams

    params = params or NodeParams()
    j_regressor = np.asarray(j_regressor, np.float64)
    positions = {f.key: data.position(f.key) for f in frames}
    bags = list(dict.fromkeys(f.bag for f in frames))
    notes: list[str] = []
    started = time.perf_counter()
    for name in bags:
        first = next(f for f in frames if f.bag == name)
        first_sample = data.sample(positions[first.key])
        pipeline.set_scene(data.scene(first_sample.scene_id).cloud)  # the bag's scene replaces it
        bag_tracking = tracking
        if bag_tracking is None:
            from sahmr_ros.tracking import TrackingParams

            bag_tracking = TrackingParams() if first_sample.sequence_id else TrackingParams(smoothing=False)
        summary = run_bag(split_dir / name, out_root / name, params, pipeline, progress=progress,
                          log=lambda line: log(f"  {name}: {line}"), tracking=bag_tracking)
        notes.append(f"{name}: {summary.frames_processed} of {summary.image_messages} frames processed, "
                     f"{summary.persons} persons" + (f"; errors: {summary.errors_by_kind}"
                                                     if summary.errors_by_kind else ""))

    wanted = {(f.bag, f.stamp_ns): f.key for f in frames}

    def published(keys: set[str] | None = None):
        """Yield (key, humans) of every published frame of the index (of ``keys`` when given)."""
        for name in bags:
            for stamp, humans in read_humans(out_root / name, params.humans_topic):
                key = wanted.get((name, stamp))
                if key is not None and (keys is None or key in keys):
                    yield key, humans

    by_key: dict[str, list] = {}
    state: dict = {}
    bar = tqdm(total=len(frames), desc="sahmr eval (bag outputs)", unit="image", disable=not progress,
               dynamic_ncols=True)

    def add(key: str, humans: list) -> None:
        sample = data.sample(positions[key])
        _body_of(sample, data)
        scene = data.scene(sample.scene_id)
        if state.get("id") != scene.scene_id:
            state.update(id=scene.scene_id, index=_SceneIndex(scene))
        _match_boxes(sample, humans)
        by_key[key] = evaluate_frame(sample, scene, [h for h in humans if h.box_index >= 0], [], j_regressor,
                                     scene_index=state["index"])
        bar.update(1)

    for key, humans in published():  # streamed: one frame's meshes in memory at a time
        if key not in by_key:
            add(key, humans)
    for f in frames:  # frames the node published nothing for: every person is missing
        if f.key not in by_key:
            add(f.key, [])
    bar.close()
    rows = [r for f in frames for r in by_key[f.key]]
    wall = time.perf_counter() - started

    def views(keys: Sequence[str]) -> dict[str, FrameView]:
        found = dict(published(set(keys)))
        out = {}
        for key in keys:
            sample = data.sample(data.position(key))
            humans = found.get(key, [])
            _match_boxes(sample, humans)
            image, K = frame_inputs(sample)
            out[key] = FrameView(sample, data.scene(sample.scene_id), image, K,
                                 [h for h in humans if h.box_index >= 0])
        return out

    return EvalResult(rows, "node", len(frames), wall, views, notes, [out_root / name for name in bags])
