"""Per-frame SA-HMR inference: image + camera + boxes + latched scene -> people in the map frame.

>>> pipe = Pipeline.from_model_dir("models", checkpoint="models/sahmr_rich.pt")  # doctest: +SKIP
>>> pipe.set_scene(scene_points_map)                                             # doctest: +SKIP
>>> frame = pipe.process(image_rgb, K, T_map_camera, boxes_xyxy)                 # doctest: +SKIP
>>> frame.persons[0].vertices_map.shape                                          # doctest: +SKIP
(6890, 3)

All persons of a frame go through the networks as one batch. Boxes that cannot be processed are
reported in ``FrameResult.skipped`` with a reason; the others are still processed. Frames:
camera optical (x right, y down, z forward) inside, map frame (REP-103) in every output.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import ThreadpoolController

from sahmr_ros import constants as C
from sahmr_ros.checkpoint import load_checkpoint, load_state_strict
from sahmr_ros.errors import CheckpointError, InputError
from sahmr_ros.geometry import (
    check_intrinsics,
    check_pose,
    crop_images,
    roi_anchors,
    square_crop_boxes,
    transform_points,
)
from sahmr_ros.networks.precision import autocast_dtype, resolve_precision, store_weights_in
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig
from sahmr_ros.scene import Scene

__all__ = ["PipelineConfig", "PersonResult", "SkippedPerson", "FrameResult", "Pipeline", "STAGES",
           "EMBEDDED_WEIGHTS"]

# Stages reported in FrameResult.timings_ms, in pipeline order.
STAGES = (
    "crop",
    "rcnet_cnn",
    "roi_query",
    "voxelise",
    "sparse_cnn",
    "mesh_cnn",
    "transformer",
    "upsampling",
    "total",
)

FLAG_NO_SCENE_POINTS = C.FLAG_NO_SCENE_POINTS  # root from the image alone, no contacts
FLAG_NON_FINITE = C.FLAG_NON_FINITE  # NaN/inf in the estimate (broken weights): do not use it
# Pipeline.embedded_default's choices: the trained weights shipped in sahmr_ros/weights/, or random ones
EMBEDDED_WEIGHTS = ("shipped", "untrained")


@dataclass(frozen=True)
class PipelineConfig:
    """Run-time options.

    Attributes:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``...
        precision: ``"fp32"``, or ``"fp16"`` / ``"bf16"``: the networks run under autocast (CUDA or
            CPU); geometry (roots, scene points, voxels, offsets, vertices) and the linear-attention
            sums stay float32 whatever the precision (see ``networks.precision``). ``"auto"``: bf16 on
            a CPU with AVX512-BF16 or AMX, else fp32 (fp32 on CUDA; :func:`~sahmr_ros.networks.precision.
            resolve_precision`).
        scene_pitch: voxel size the scene is reduced to by :meth:`Pipeline.set_scene` (None: as given).
        max_persons: at most this many boxes per frame (highest scores first); None: no limit.
    """

    device: str = "auto"
    precision: str = "fp32"
    scene_pitch: float | None = C.SCENE_PITCH_M
    max_persons: int | None = None

    def __post_init__(self):
        resolve_precision(self.precision, "cpu")  # refuses an unknown precision here, naming the choices

    def resolved_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(self.device)
        except RuntimeError as exc:
            raise InputError(f"device: {self.device!r} is not a torch device ({exc})") from exc
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise InputError(f"device: {self.device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        return dev

    def resolved_precision(self, device: torch.device | str | None = None) -> str:
        """Return ``precision`` with ``auto`` resolved for ``device`` (None: :meth:`resolved_device`)."""
        return resolve_precision(self.precision, self.resolved_device() if device is None else device)

    def autocast_dtype(self, device: torch.device | str | None = None) -> torch.dtype | None:
        """Return the autocast dtype of the precision on ``device`` (None: fp32, no autocast)."""
        return autocast_dtype(self.resolved_precision(device))


@dataclass
class PersonResult:
    """One recovered person. Map-frame arrays are float32 (metres).

    Attributes:
        box_index: index of the person's box in the ``boxes`` passed to :meth:`Pipeline.process`.
        box_xyxy: (4,) the box.
        score: the detection score passed in (1.0 if none).
        root_map: (3,) refined pelvis. root_camera (3,) the same in the camera frame;
            coarse_root_camera (3,) RCNet's image-only estimate.
        joints14_map: (14, 3) H36M joints. vertices_map: (6890, 3) mesh (SMPL topology).
        contact_points_map: (k, 3) scene points in contact; contact_labels (k,) int64 in 1..7
            (see ``constants.CONTACT_PART_NAMES``).
        num_roi_voxels: scene voxels the sparse CNN saw for this person.
        flags: ``"no_scene_points"`` when the ROI was empty; ``"non_finite_output"`` when the
            estimate holds NaN / inf (consumers must drop such a person).
    """

    box_index: int
    box_xyxy: np.ndarray
    score: float
    root_map: np.ndarray
    root_camera: np.ndarray
    coarse_root_camera: np.ndarray
    joints14_map: np.ndarray
    vertices_map: np.ndarray
    contact_points_map: np.ndarray
    contact_labels: np.ndarray
    num_roi_voxels: int
    flags: tuple[str, ...] = ()

    def contacts_by_part(self) -> dict[str, int]:
        """Return the number of contact points per body part, by part name, parts without any left out."""
        counts = np.bincount(np.asarray(self.contact_labels, dtype=np.int64), minlength=C.NUM_CONTACT_CLASSES)
        return {C.CONTACT_PART_NAMES[k]: int(n) for k, n in enumerate(counts) if k and n}


@dataclass
class SkippedPerson:
    """A box that was not processed, and why (a sentence naming the field)."""

    box_index: int
    reason: str


@dataclass
class FrameResult:
    """Everything recovered from one frame."""

    persons: list[PersonResult] = field(default_factory=list)
    skipped: list[SkippedPerson] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)


class _StageClock:
    """Wall-clock per stage; synchronises CUDA so asynchronous kernels are attributed correctly."""

    def __init__(self, device: torch.device):
        self._sync = device.type == "cuda"
        self.ms: dict[str, float] = defaultdict(float)
        self._open: dict[str, float] = {}

    def _now(self) -> float:
        if self._sync:
            torch.cuda.synchronize()
        return time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        t0 = self._now()
        try:
            yield
        finally:
            self.ms[name] += (self._now() - t0) * 1e3

    def start(self, name: str) -> None:
        self._open[name] = self._now()

    def stop(self, name: str) -> None:
        self.ms[name] += (self._now() - self._open.pop(name)) * 1e3


class Pipeline:
    """SA-HMR inference on frames, given a latched scene.

    Args:
        model: an :class:`SAHMR` (weights loaded). Moved to the device and put in eval mode; on CPU
            with a half precision, its trunks' and transformer's weights are stored in that dtype.
        faces: (13776, 3) mesh faces of the body model (for consumers of the results).
        config: run-time options.
        weights_description: one line saying which weights are loaded (printed by tools).
        mesh_levels: the body mesh levels consumers may publish, keyed by vertex count
            (:func:`sahmr_ros.body.mesh_levels.load_mesh_levels`: 6890 and 1723); default: 6890 only.
    """

    def __init__(self, model: SAHMR, faces: np.ndarray, config: PipelineConfig = PipelineConfig(),
                 weights_description: str = "unspecified weights", mesh_levels: dict | None = None):
        from sahmr_ros.body.mesh_levels import full_mesh_level

        self.config = config
        self.device = config.resolved_device()
        self.precision = config.resolved_precision(self.device)  # "auto" resolved: fp32, bf16 or fp16
        self.autocast_dtype = autocast_dtype(self.precision)
        self.model = model.to(self.device).eval()
        if self.device.type == "cpu" and self.autocast_dtype is not None:  # half weights once, not per call
            store_weights_in(self.model.network_layers(), self.autocast_dtype)
        else:
            _require_float32_weights(self.model, self.precision, self.device)
        self.faces = np.asarray(faces, dtype=np.int64)
        self.mesh_levels = mesh_levels or {C.NUM_VERTICES: full_mesh_level(faces)}
        self.weights_description = weights_description
        self.scene: Scene | None = None
        self._clock: _StageClock | None = None
        # numpy / scipy's OpenBLAS runs one thread during a frame (small (N, 3) products): its idle workers
        # spin after each call and take the cores from torch's OpenMP threads (on 2 cores, 1 frame in 3 at
        # 8 persons stalled for 70-110 ms in the first torch ops after the ROI query)
        self._numpy_blas = ThreadpoolController()
        self._install_stage_hooks()

    # -- construction -------------------------------------------------------------------------------
    @classmethod
    def from_model_dir(cls, model_dir: str | Path, checkpoint: str | Path | None = None, preset: str | None = None,
                       config: PipelineConfig = PipelineConfig()) -> "Pipeline":
        """Build from a model directory (SMPL + official assets) and a sahmr_ros checkpoint.

        Raises:
            ModelFilesMissingError: listing every missing model file and where to get it.
            CheckpointError: unreadable checkpoint or preset mismatch.
        """
        from sahmr_ros.body import load_body_assets
        from sahmr_ros.body.mesh_levels import load_mesh_levels

        if checkpoint is None and preset is None:
            raise CheckpointError("no checkpoint given: pass checkpoint=PATH (see models/README.md)")
        payload = load_checkpoint(checkpoint, expected_preset=preset) if checkpoint is not None else None
        preset = payload["preset"] if payload is not None else preset
        body = load_body_assets(model_dir)
        model = SAHMR(SAHMRConfig.from_preset(preset), body)
        description = f"{preset} preset, untrained (no checkpoint)"
        if payload is not None:
            load_state_strict(model, payload["state_dict"], f"checkpoint {checkpoint}", preset)
            description = f"{preset} preset, checkpoint {Path(checkpoint).name}"
        if body.is_synthetic:
            description += ", SYNTHETIC body model (not SMPL)"
        return cls(model, body.faces, config, description, load_mesh_levels(model_dir, body.faces))

    @classmethod
    def embedded_default(cls, model_dir: str | Path, config: PipelineConfig = PipelineConfig(),
                         checkpoint: str | Path | None = None, weights: str = "shipped",
                         seed: int = 0) -> "Pipeline":
        """Build the embedded default: the synthetic body model and the weights shipped in the package.

        Needs no download. Only used when explicitly asked for (``sahmr demo``, ``--demo``, ``demo:=true``).

        Args:
            model_dir: a directory written by
                :func:`sahmr_ros.body.synthetic.write_synthetic_model_dir`.
            config: run-time options.
            checkpoint: load this sahmr_ros checkpoint (either preset) instead of the shipped weights.
            weights: ``"shipped"`` (default): ``sahmr_ros/weights/small_synthetic.pt``, the small preset
                trained on synthetic data (see ``sahmr_ros/weights/MODEL_CARD.md``); ``"untrained"``:
                the small preset with random weights drawn from ``seed`` (the floor the card compares with).
            seed: seed of the untrained weights.

        Raises:
            CheckpointError: the shipped file is missing, corrupt or does not match its model card (the
                message names the file and how to restore it); an unreadable ``checkpoint``.
            InputError: unknown ``weights``, or ``weights="untrained"`` together with a checkpoint.
        """
        from sahmr_ros.body import load_body_assets
        from sahmr_ros.body.mesh_levels import load_mesh_levels

        if weights not in EMBEDDED_WEIGHTS:
            raise InputError(f"weights: {weights!r} unknown; choose one of {', '.join(EMBEDDED_WEIGHTS)}")
        if checkpoint is not None and weights == "untrained":
            raise InputError("weights: 'untrained' and a checkpoint were both given; choose one")
        shipped = None
        if checkpoint is None and weights == "shipped":
            from sahmr_ros.weights import RESTORE_HINT, shipped_weights

            shipped = shipped_weights()  # checked against its card before anything is built
        body = load_body_assets(model_dir)
        if checkpoint is None and shipped is None:
            torch.manual_seed(seed)
            model = SAHMR(SAHMRConfig.small(), body)
            description = f"embedded default: small preset with UNTRAINED random weights (seed {seed})"
        else:  # the shipped weights, or any preset's checkpoint (e.g. an imported official one)
            path = shipped.checkpoint if shipped is not None else checkpoint
            try:
                payload = load_checkpoint(path)
            except CheckpointError as exc:
                if shipped is None:
                    raise
                raise CheckpointError(f"embedded default weights: {exc}; {RESTORE_HINT}") from exc
            model = SAHMR(SAHMRConfig.from_preset(payload["preset"]), body)
            load_state_strict(model, payload["state_dict"], f"checkpoint {path}", payload["preset"])
            if shipped is not None:
                description = shipped.description
            else:
                description = f"{payload['preset']} preset, checkpoint {Path(checkpoint).name}"
        return cls(model, body.faces, config, description + ", synthetic body",
                   load_mesh_levels(model_dir, body.faces))

    # -- scene --------------------------------------------------------------------------------------
    def set_scene(self, points_map: np.ndarray) -> Scene:
        """Latch the scene (map frame, (N, 3)); replaces any previous scene. Returns it.

        Safe to call from another thread while :meth:`process` runs: a frame in progress finishes
        with the scene it started with (the new one is built first, then swapped in at once).
        """
        self.scene = Scene(points_map, pitch=self.config.scene_pitch)
        return self.scene

    # -- per frame ----------------------------------------------------------------------------------
    def process(self, image: np.ndarray, K: np.ndarray, T_map_camera: np.ndarray, boxes_xyxy: np.ndarray,
                scores: np.ndarray | None = None) -> FrameResult:
        """Recover every person of one frame.

        Args:
            image: (H, W, 3) uint8 RGB.
            K: (3, 3) intrinsics of ``image`` (rectified / undistorted).
            T_map_camera: (4, 4) camera pose in the map frame at the image's time.
            boxes_xyxy: (N, 4) person boxes in pixels; N may be 0.
            scores: (N,) detection scores (optional; used to keep the best ``max_persons``).

        Returns:
            :class:`FrameResult`; persons in box order.

        Raises:
            InputError: malformed image, K, pose or box array, or no scene set. Individual bad
                boxes do not raise: they are reported in ``FrameResult.skipped``.
        """
        clock = _StageClock(self.device)
        t_total = time.perf_counter()
        image = _check_image(image)
        K = check_intrinsics(K)
        T_map_camera = check_pose(T_map_camera)
        boxes, scores = _check_boxes(boxes_xyxy, scores)
        scene = self.scene  # one scene for the whole frame, even if set_scene runs meanwhile
        if scene is None:
            raise InputError("scene: no scene set; call set_scene(points_map) with the map-frame point cloud first")

        result = FrameResult()
        keep = self._select_boxes(boxes, scores, image.shape, result.skipped)
        if keep:
            self._clock = clock
            try:
                with torch.inference_mode(), self._autocast(), self._numpy_blas.limit(limits=1, user_api="blas"):
                    result.persons = self._run(scene, image, K, T_map_camera, boxes, scores, keep, clock)
            finally:
                self._clock = None
        clock.ms["total"] = (time.perf_counter() - t_total) * 1e3
        result.timings_ms = {s: float(clock.ms.get(s, 0.0)) for s in STAGES}
        return result

    def _run(self, scene, image, K, T_map_camera, boxes, scores, keep, clock) -> list[PersonResult]:
        dev = self.device
        bbx_np = square_crop_boxes(boxes[keep])  # (B, 4)
        B = len(keep)
        with clock.stage("crop"):
            img = torch.from_numpy(image).to(dev).permute(2, 0, 1).float().div_(255.0)
            bbx = torch.from_numpy(bbx_np).to(dev)
            Kt = torch.from_numpy(K).to(dev).expand(B, 3, 3)
            crops = crop_images(img, bbx)
        with clock.stage("rcnet_cnn"):
            root = self.model.estimate_root(crops, bbx, Kt)
        with clock.stage("roi_query"):
            anchors = roi_anchors(root.root_camera.double().cpu().numpy())  # (B, 3, 3) camera frame
            # all persons in one query; a non-finite root (broken weights) gets no points and is flagged
            points, person = scene.roi_points_camera_batch(anchors, T_map_camera, K, bbx_np)
            roi = list(torch.from_numpy(points).to(dev).split(np.bincount(person, minlength=B).tolist()))  # B (N_b, 3)
        clock.start("contacts")
        contacts = self.model.estimate_contacts(root, roi, bbx, Kt)
        clock.stop("contacts")
        mesh = self.model.estimate_mesh(crops, contacts)
        clock.ms["voxelise"] = clock.ms.pop("contacts") - clock.ms.get("sparse_cnn", 0.0)
        return self._to_results(boxes, scores, keep, root, contacts, mesh, T_map_camera)

    def _to_results(self, boxes, scores, keep, root, contacts, mesh, T_map_camera) -> list[PersonResult]:
        def to_map(x: torch.Tensor) -> np.ndarray:
            return transform_points(T_map_camera, x.double().cpu().numpy()).astype(np.float32)

        persons = []
        for b, i in enumerate(keep):
            n_vox = int(contacts.num_voxels[b])
            persons.append(
                PersonResult(
                    box_index=i,
                    box_xyxy=boxes[i].copy(),
                    score=float(scores[i]),
                    root_map=to_map(contacts.root_camera[b]),
                    root_camera=contacts.root_camera[b].double().cpu().numpy(),
                    coarse_root_camera=root.root_camera[b].double().cpu().numpy(),
                    joints14_map=to_map(mesh.joints14_camera[b]),
                    vertices_map=to_map(mesh.vertices_camera[b]),
                    contact_points_map=to_map(contacts.contact_points[b]).reshape(-1, 3),
                    contact_labels=contacts.contact_labels[b].cpu().numpy().astype(np.int64),
                    num_roi_voxels=n_vox,
                )
            )
            p = persons[-1]
            finite = all(np.isfinite(a).all() for a in (p.root_map, p.vertices_map, p.joints14_map))
            p.flags = (() if n_vox else (FLAG_NO_SCENE_POINTS,)) + (() if finite else (FLAG_NON_FINITE,))
        return persons

    def _select_boxes(self, boxes, scores, image_shape, skipped: list[SkippedPerson]) -> list[int]:
        H, W = image_shape[:2]
        ok = []
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            if not np.isfinite(boxes[i]).all():
                skipped.append(SkippedPerson(i, f"boxes[{i}]: non-finite coordinates {boxes[i].tolist()}"))
            elif x2 <= x1 or y2 <= y1:
                skipped.append(SkippedPerson(i, f"boxes[{i}]: degenerate box (need x2 > x1 and y2 > y1), "
                                                f"got {boxes[i].tolist()}"))
            elif x2 <= 0 or y2 <= 0 or x1 >= W or y1 >= H:
                skipped.append(SkippedPerson(i, f"boxes[{i}]: entirely outside the {W}x{H} image, "
                                                f"got {boxes[i].tolist()}"))
            else:
                ok.append(i)
        limit = self.config.max_persons
        if limit is not None and len(ok) > limit:
            ranked = sorted(ok, key=lambda i: (-scores[i], i))
            for i in ranked[limit:]:
                skipped.append(SkippedPerson(i, f"boxes[{i}]: over max_persons={limit} (lower score)"))
            ok = sorted(ranked[:limit])
        return ok

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def _install_stage_hooks(self) -> None:
        """Time the sub-networks the pipeline does not call itself (pre/post forward hooks)."""
        mesh = self.model.mesh_network
        timed = [
            (self.model.rcnet.contact_net, "sparse_cnn"),
            (mesh.backbone, "mesh_cnn"),
            (mesh.vertex_upsampling, "upsampling"),
        ] + [(block, "transformer") for block in mesh.trans_encoder]
        for module, name in timed:
            module.register_forward_pre_hook(self._stage_hook(name, start=True))
            module.register_forward_hook(self._stage_hook(name, start=False))

    def _stage_hook(self, name: str, start: bool):
        def hook(*_):  # returns None: the module's inputs and outputs are left untouched
            if self._clock is not None:
                (self._clock.start if start else self._clock.stop)(name)

        return hook


def _require_float32_weights(model: SAHMR, precision: str, device: torch.device) -> None:
    """Refuse a model whose network weights a half-precision CPU Pipeline already stored in bf16 / fp16.

    Autocast runs fp32 and CUDA half precision from float32 weights; half-precision weights would fail at
    the first convolution, and converting them back would silently keep their rounding.
    """
    half = {p.dtype for layer in model.network_layers() for p in layer.parameters() if p.is_floating_point()}
    half.discard(torch.float32)
    if half:
        names = ", ".join(sorted(str(d).removeprefix("torch.") for d in half))
        raise InputError(f"model: its network weights are stored in {names} (a half-precision CPU Pipeline built "
                         f"on the same model converted them); load the checkpoint again for precision "
                         f"{precision} on {device}")


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", type(image).__name__)
        raise InputError(f"image: expected an (H, W, 3) RGB array, got {shape}")
    if image.dtype != np.uint8:
        raise InputError(f"image: expected dtype uint8 (0..255 RGB), got {image.dtype}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise InputError(f"image: too small ({image.shape[1]}x{image.shape[0]} pixels)")
    return np.require(image, requirements=("C", "W"))  # torch wants writable memory (ROS buffers are not)


def _check_boxes(boxes_xyxy, scores) -> tuple[np.ndarray, np.ndarray]:
    boxes = np.asarray(boxes_xyxy, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise InputError(f"boxes: expected an (N, 4) array of x1, y1, x2, y2 pixel boxes, got shape {boxes.shape}")
    if scores is None:
        scores = np.ones(len(boxes))
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(scores) != len(boxes):
        raise InputError(f"scores: expected one score per box ({len(boxes)}), got {len(scores)}")
    return boxes, scores
