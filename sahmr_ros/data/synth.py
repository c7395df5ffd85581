"""``sahmr synth``: RICH/PROX-like samples with exact ground truth, from procedural rooms and a body model.

Per scene (one procedural room, :func:`sahmr_ros.data.rooms.make_room`): the room's scan cloud at
2 cm (with random noise and holes, as a robot's map), its mesh and its SDF grid. Per frame of a
scene: 1 to 4 people posed in contact with the room (:mod:`sahmr_ros.data.placement`), a camera as a
robot carries it (0.4 to 2.0 m high, people 1 to 8 m away, one of a few intrinsics and image sizes
between 640x480 and 1280x720, some with plumb_bob distortion), the image rendered with Open3D
(:mod:`sahmr_ros.visualization.render`; people occlude each other and are occluded by furniture),
and per visible person the ground truth of :class:`~sahmr_ros.data.sample.Person`: the box of the
visible mask, the visible fraction, H36M root and 14 joints and the 6890 vertices in camera and map
frames, the body parameters, per-vertex contact and the contact labels of the scene points within
7 cm of a part vertex (SPEC section 6). The visible fraction is the visible share of the body's
silhouette inside the image (occlusion); a body the image border cuts is flagged ``truncated``.

**Sequence mode** (``SynthConfig(sequence=True, fps=...)``, ``sahmr synth --sequence --fps``): each scene
is one sequence of ``frames_per_scene`` frames at ``fps``. Some of its people walk back and forth along
floor paths at about 1 m/s (gait phase following the distance walked; :mod:`sahmr_ros.data.motion`,
:func:`~sahmr_ros.data.placement.place_walker`), the others stand or sit still; the camera sways along a
line while looking at the people. Each frame is a sample (``sequence_id`` = the scene id,
``frame_index``) whose persons carry a stable ``track_id``; a person hidden in a frame (below the
visibility threshold or out of view) is simply absent from it. Its bag (``bags/<split>/``) has the
sequence's frame period and detections without ids, so the node's tracker assigns the tracks.

Determinism: every scene draws from its own seed (``SeedSequence([seed, split, index])``), and the
writer stores scenes in index order whatever the number of worker processes, so the same arguments
give the same bytes. Frames: map (REP-103, z up) and camera optical (x right, y down, z forward);
metres and pixels.
"""

from __future__ import annotations

import functools
import multiprocessing
import os
import tempfile
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from sahmr_ros import constants as C
from sahmr_ros.data.sample import NO_DISTORTION, Person, Sample, Scene
from sahmr_ros.errors import InputError

__all__ = ["GENERATOR_VERSION", "SynthConfig", "CameraModel", "camera_pool", "generate_scene", "synthesize"]

GENERATOR_VERSION = "sahmr_synth/1"
SPLITS = ("train", "val", "test")
IMAGE_SIZES = ((640, 480), (848, 480), (960, 540), (1280, 720))
HORIZONTAL_FOV_DEG = (55.0, 90.0)
DISTORTION_PROBABILITY = 0.3  # share of the camera models with plumb_bob distortion
DISTORTION_K1 = (-0.25, 0.05)  # plumb_bob k1 range (k2 = -k1 / 4, small tangential terms)
CAMERA_POOL_SIZE = 6  # camera models per split: the renderer caches its rays per calibration
CAMERA_HEIGHT_M = (0.4, 2.0)
PERSON_DISTANCE_M = (1.0, 8.0)
AIM_JITTER_M = 0.3  # the camera looks at the people's centre moved by up to this much
CAMERA_CLEARANCE_M = 0.1  # the camera and its line of sight stay this far from every solid
CAMERA_TRIES = 40
PEOPLE_PER_IMAGE = (1, 4)
FRAME_TRIES = 6  # new people and camera when nobody is visible enough
MIN_VISIBLE_FRACTION = 0.15  # people less visible than this are rendered but not annotated
OCCLUDED_BELOW = 0.7  # a person with a visible fraction below this is flagged "occluded"
MIN_BOX_PX = 16.0
SEQUENCE_WALKER_SHARE = 0.6  # in sequence mode each person walks with this probability (at least one walks)
SEQUENCE_STILL_CATEGORIES = ("standing", "sitting", "sitting_back")  # the others stand or sit still
SEQUENCE_SEEN_SHARE = 0.8  # someone's pelvis is in the camera's view in at least this share of the frames
CLOUD_NOISE_M = (0.0, 0.004)  # the scan's noise (standard deviation) is drawn in this range
CLOUD_HOLE_FRACTION = (0.0, 0.05)  # share of the scan removed in holes
BODY_MODEL_SYNTHETIC = "synthetic"
BODY_MODEL_SMPL = "smpl"
_CLOTHES_RGB = ((214, 160, 120), (120, 170, 214), (150, 200, 120), (200, 120, 160), (230, 200, 110),
                (110, 110, 130), (180, 90, 60), (90, 160, 160))


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics of one camera model (a robot's camera).

    Attributes:
        width, height: image size in pixels.
        K: (3, 3) float64 intrinsics.
        distortion_model: ``"none"`` or ``"plumb_bob"``; distortion: (n,) its coefficients.
    """

    width: int
    height: int
    K: np.ndarray
    distortion_model: str = NO_DISTORTION
    distortion: np.ndarray = field(default_factory=lambda: np.zeros(0))


@dataclass(frozen=True)
class SynthConfig:
    """What ``sahmr synth`` generates.

    Attributes:
        split: ``train``, ``val`` or ``test`` (drawn from different seeds).
        scenes: number of rooms; frames_per_scene: images per room.
        seed: master seed.
        people: (min, max) people per image (per sequence in sequence mode).
        model_dir: body model directory (SMPL, or ``None`` for the synthetic body).
        sequence: each scene is one sequence of ``frames_per_scene`` frames (module docstring).
        fps: frames per second of a sequence.
    """

    split: str = "test"
    scenes: int = 2
    frames_per_scene: int = 4
    seed: int = 0
    people: tuple[int, int] = PEOPLE_PER_IMAGE
    model_dir: str | None = None
    sequence: bool = False
    fps: float = 10.0

    def __post_init__(self):
        if not (np.isfinite(self.fps) and 0 < self.fps <= 1000):
            raise InputError(f"--fps: expected frames per second in (0, 1000], got {self.fps}")
        if self.split not in SPLITS:
            raise InputError(f"--split: {self.split!r} unknown; choose one of {', '.join(SPLITS)}")
        for name in ("scenes", "frames_per_scene"):
            if getattr(self, name) < 1:
                raise InputError(f"--{name.replace('_', '-')}: must be >= 1, got {getattr(self, name)}")
        lo, hi = self.people
        if not 1 <= lo <= hi:
            raise InputError(f"people: expected 1 <= min <= max, got {self.people}")


def _seed(*parts) -> np.random.SeedSequence:
    """Build a seed sequence of integers and strings (strings by their CRC32, stable across processes)."""
    return np.random.SeedSequence([p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts])


def camera_pool(seed: int, split: str, size: int = CAMERA_POOL_SIZE) -> list[CameraModel]:
    """Draw the split's camera models (image sizes, focal lengths, distortion) once per split."""
    rng = np.random.default_rng(_seed(seed, split, "cameras"))
    pool = []
    for _ in range(size):
        width, height = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
        fx = 0.5 * width / np.tan(np.radians(rng.uniform(*HORIZONTAL_FOV_DEG)) / 2)
        fy = fx * rng.uniform(0.99, 1.01)
        cx, cy = width / 2 - 0.5 + rng.normal(0, 4.0), height / 2 - 0.5 + rng.normal(0, 4.0)
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        if rng.random() < DISTORTION_PROBABILITY:
            k1 = rng.uniform(*DISTORTION_K1)
            coeffs = np.array([k1, -k1 / 4, rng.normal(0, 5e-4), rng.normal(0, 5e-4), 0.0])
            pool.append(CameraModel(width, height, K, "plumb_bob", coeffs))
        else:
            pool.append(CameraModel(width, height, K))
    return pool


# ------------------------------------------------------------------------------------------------
# one scene (runs in a worker process)
# ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=2)
def _body(model_dir: str):
    """(smplx model, BodyAssets) of a model directory, loaded once per process."""
    from sahmr_ros.body import load_body_assets, load_body_model

    return load_body_model(model_dir), load_body_assets(model_dir)


def _camera_pose(room, target: np.ndarray, rng: np.random.Generator):
    """``T_camera_map`` of a robot's camera looking at ``target`` with a free line of sight, or None."""
    from sahmr_ros.visualization.render import look_at_camera

    eye_aim = _camera_eye(room, target, rng)
    return None if eye_aim is None else look_at_camera(*eye_aim)


def _camera_reach(room) -> np.ndarray:
    return room.size / 2 + 2.0  # through an open side the robot may stand outside the walls


def _camera_eye(room, target: np.ndarray, rng: np.random.Generator):
    """``(eye, aim)`` of a robot's camera looking at ``target`` with a free line of sight, or None."""
    reach = _camera_reach(room)
    for _ in range(CAMERA_TRIES):
        angle = rng.uniform(-np.pi, np.pi)
        distance = rng.uniform(*PERSON_DISTANCE_M)
        eye = np.array([*(target[:2] + distance * np.array([np.cos(angle), np.sin(angle)])),
                        rng.uniform(*CAMERA_HEIGHT_M)])
        if (np.abs(eye[:2]) > reach).any():
            continue
        aim = target + rng.uniform(-AIM_JITTER_M, AIM_JITTER_M, 3) * np.array([1.0, 1.0, 0.5])
        line = eye + np.linspace(0.0, 0.85, 24)[:, None] * (aim - eye)
        if room.sdf(line, cutoff=CAMERA_CLEARANCE_M).min() < CAMERA_CLEARANCE_M:
            continue
        return eye, aim
    return None


def _scene_contacts(tree, cloud: np.ndarray, vertices: np.ndarray, part_ids: np.ndarray):
    """Return (indices int32 ascending, labels uint8) of the cloud points within 7 cm of a part vertex."""
    from sahmr_ros.evaluation.metrics import CONTACT_GT_RADIUS_M, contact_ground_truth_labels

    lo, hi = vertices.min(0) - CONTACT_GT_RADIUS_M, vertices.max(0) + CONTACT_GT_RADIUS_M
    near = np.asarray(tree.query_ball_point((lo + hi) / 2, np.linalg.norm(hi - lo) / 2), dtype=np.int64)
    near = np.sort(near[((cloud[near] >= lo) & (cloud[near] <= hi)).all(1)])
    labels = contact_ground_truth_labels(cloud[near], vertices, part_ids)
    hit = labels > 0
    return near[hit].astype(np.int32), labels[hit].astype(np.uint8)


def _person(placed, body, T_camera_map, box, visible, flags, contacts, track_id: int = -1) -> Person:
    from sahmr_ros.geometry import transform_points

    vertices_map = placed.vertices.astype(np.float64)
    joints17 = body.j_regressor_h36m @ vertices_map
    root_map = joints17[C.H36M_PELVIS]
    joints14_map = joints17[list(C.H36M_J17_TO_J14)]
    return Person(
        box_xyxy=np.asarray(box, np.float64), visible_fraction=float(visible), category=placed.category,
        root_camera=transform_points(T_camera_map, root_map), root_map=root_map,
        joints14_camera=transform_points(T_camera_map, joints14_map), joints14_map=joints14_map,
        vertices_camera=transform_points(T_camera_map, vertices_map).astype(np.float32),
        vertices_map=vertices_map.astype(np.float32), vertex_contact=np.asarray(placed.vertex_contact, bool),
        scene_contact_indices=contacts[0], scene_contact_labels=contacts[1],
        betas=np.asarray(placed.betas, np.float32), global_orient=np.asarray(placed.global_orient, np.float32),
        body_pose=np.asarray(placed.body_pose, np.float32), transl=np.asarray(placed.transl, np.float32),
        flags=tuple(flags), track_id=track_id)


def _frame(room, scene_points, tree, cameras, model_dir, body_model_name, rng, people_range, timings):
    """Place people, choose a camera, render; returns (camera model, T_camera_map, image, persons)."""
    from sahmr_ros.data.placement import PlacementError, sample_person
    from sahmr_ros.visualization.render import Light

    smpl, body = _body(model_dir)
    light = Light(direction_map=room.lighting.direction_map, ambient=room.lighting.ambient,
                  intensity=room.lighting.intensity)
    for _ in range(FRAME_TRIES):
        t0 = time.perf_counter()
        people = []
        for _ in range(int(rng.integers(people_range[0], people_range[1] + 1))):
            try:
                people.append(sample_person(smpl, room, rng, part_ids=body.part_ids_6890, others=people))
            except PlacementError:
                break
        timings["place"] += time.perf_counter() - t0
        if not people:
            continue
        t0 = time.perf_counter()
        camera = cameras[rng.integers(len(cameras))]
        T_camera_map = _camera_pose(room, np.mean([p.pelvis for p in people], axis=0), rng)
        timings["camera"] += time.perf_counter() - t0
        if T_camera_map is None:
            continue
        colors = [_CLOTHES_RGB[rng.integers(len(_CLOTHES_RGB))] for _ in people]
        rgb, persons = _render_people(room, scene_points, tree, camera, T_camera_map, people, colors, body, light,
                                      timings)
        if persons:
            return camera, T_camera_map, rgb, persons
    return camera, T_camera_map, rgb if people and T_camera_map is not None else None, []


def _render_people(room, scene_points, tree, camera, T_camera_map, people, colors, body, light, timings,
                   track_ids=None):
    """Render the room with ``people``; returns (rgb, ground truth of each person seen enough)."""
    from sahmr_ros.visualization.render import render, silhouettes

    t0 = time.perf_counter()
    distortion = camera.distortion if camera.distortion_model != NO_DISTORTION else None
    lens = dict(distortion=distortion, distortion_model=camera.distortion_model if distortion is not None else None)
    meshes = [(room.mesh_vertices, room.mesh_faces, room.face_colors)]
    meshes += [(p.vertices, body.faces, np.array(c, np.uint8)) for p, c in zip(people, colors)]
    out = render(meshes, camera.K, T_camera_map, camera.width, camera.height, light=light, **lens)
    full = silhouettes([(p.vertices, body.faces) for p in people], camera.K, T_camera_map,
                       camera.width, camera.height, **lens)
    timings["render"] += time.perf_counter() - t0
    t0 = time.perf_counter()
    persons = []
    for i, placed in enumerate(people):
        visible = out.instance == i + 1
        n_visible, n_full = int(visible.sum()), int(full[i].sum())
        fraction = n_visible / n_full if n_full else 0.0
        if fraction < MIN_VISIBLE_FRACTION:
            continue
        ys, xs = np.nonzero(visible)
        box = (xs.min() - 0.5, ys.min() - 0.5, xs.max() + 0.5, ys.max() + 0.5)
        if min(box[2] - box[0], box[3] - box[1]) < MIN_BOX_PX:
            continue
        edge = full[i]
        flags = ["occluded"] if fraction < OCCLUDED_BELOW else []
        if edge[0].any() or edge[-1].any() or edge[:, 0].any() or edge[:, -1].any():
            flags.append("truncated")
        contacts = _scene_contacts(tree, scene_points, placed.vertices, body.part_ids_6890)
        persons.append(_person(placed, body, T_camera_map, box, fraction, flags, contacts,
                               -1 if track_ids is None else track_ids[i]))
    timings["ground_truth"] += time.perf_counter() - t0
    return out.rgb, persons


def _sequence(room, scene_points, tree, cameras, model_dir, rng, config: SynthConfig, timings):
    """Place still and walking people and a swaying camera; returns per frame (camera, T_camera_map, image, persons)."""
    from sahmr_ros.data.motion import sample_walk_path
    from sahmr_ros.data.placement import PlacementError, place_walker, sample_person
    from sahmr_ros.visualization.render import Light

    smpl, body = _body(model_dir)
    light = Light(direction_map=room.lighting.direction_map, ambient=room.lighting.ambient,
                  intensity=room.lighting.intensity)
    times = np.arange(config.frames_per_scene) / config.fps
    for _ in range(FRAME_TRIES):
        t0 = time.perf_counter()
        count = int(rng.integers(config.people[0], config.people[1] + 1))
        walking = max(1, int(rng.binomial(count, SEQUENCE_WALKER_SHARE)))
        still, walkers = [], []
        for _ in range(count - walking):
            try:
                still.append(sample_person(smpl, room, rng, part_ids=body.part_ids_6890, others=still,
                                           categories=SEQUENCE_STILL_CATEGORIES))
            except PlacementError:
                break
        for _ in range(walking):
            path = sample_walk_path(room, rng, avoid_xy=[p.pelvis for p in still])
            if path is None:
                continue
            try:
                walkers.append(place_walker(smpl, room, path, times, rng, part_ids=body.part_ids_6890, others=still,
                                            walkers=walkers))
            except PlacementError:
                continue
        timings["place"] += time.perf_counter() - t0
        if not walkers:
            continue
        t0 = time.perf_counter()
        frames_people = [still + [w[k] for w in walkers] for k in range(len(times))]
        centres = np.array([np.mean([p.pelvis for p in people], axis=0) for people in frames_people])
        camera = cameras[rng.integers(len(cameras))]
        poses = _camera_poses(room, camera, centres, frames_people, times, rng)
        timings["camera"] += time.perf_counter() - t0
        if poses is None:
            continue
        colors = [_CLOTHES_RGB[rng.integers(len(_CLOTHES_RGB))] for _ in frames_people[0]]
        frames = []
        for people, T_camera_map in zip(frames_people, poses):
            rgb, persons = _render_people(room, scene_points, tree, camera, T_camera_map, people, colors, body,
                                          light, timings, track_ids=list(range(len(people))))
            frames.append((camera, T_camera_map, rgb, persons))
        return frames
    raise InputError(f"room {room.seed}: no sequence could be placed and seen after {FRAME_TRIES} tries; this is a "
                     "generator bug, please report it")


def _camera_poses(room, camera: CameraModel, centres, frames_people, times, rng):
    """``T_camera_map`` per frame of a camera swaying while it looks at the people's centres, or None."""
    from sahmr_ros.data.motion import sample_camera_path
    from sahmr_ros.visualization.render import look_at_camera

    reach = _camera_reach(room)
    for _ in range(CAMERA_TRIES // 4):
        eye_aim = _camera_eye(room, centres[0], rng)
        if eye_aim is None:
            return None
        path = sample_camera_path(eye_aim[0], eye_aim[1] - centres[0], rng)
        eyes = path.eyes(times)
        aims = centres + path.aim_offset
        if (np.abs(eyes[:, :2]) > reach).any() or room.sdf(eyes, cutoff=CAMERA_CLEARANCE_M).min() < CAMERA_CLEARANCE_M:
            continue
        poses = [look_at_camera(eye, aim) for eye, aim in zip(eyes, aims)]
        seen = 0
        for T, people in zip(poses, frames_people):
            pelvis = np.array([p.pelvis for p in people]) @ T[:3, :3].T + T[:3, 3]
            near = np.linalg.norm(pelvis, axis=1)
            if near.min() < PERSON_DISTANCE_M[0] * 0.8:
                break  # someone walks into the camera
            uv = pelvis[:, :2] / np.maximum(pelvis[:, 2:], 1e-6) @ camera.K[:2, :2].T + camera.K[:2, 2]
            seen += bool(((pelvis[:, 2] > 0.5) & (uv[:, 0] >= 0) & (uv[:, 0] < camera.width) & (uv[:, 1] >= 0)
                          & (uv[:, 1] < camera.height)).any())
        else:
            if seen >= SEQUENCE_SEEN_SHARE * len(poses):
                return poses
    return None


def generate_scene(config: SynthConfig, index: int, model_dir: str, body_model_name: str):
    """Generate scene ``index`` of ``config`` and its frames.

    Runs torch on one thread (workers are processes; small body-model batches run fastest so) and gives the
    caller's thread count back.

    Returns:
        ``(Scene, [Sample, ...], timings)``: timings are seconds per stage (room, cloud, sdf,
        place, camera, render, ground_truth).
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _generate_scene(config, index, model_dir, body_model_name)
    finally:
        torch.set_num_threads(previous)


def _generate_scene(config: SynthConfig, index: int, model_dir: str, body_model_name: str):
    from scipy.spatial import cKDTree

    from sahmr_ros.data.rooms import make_room
    from sahmr_ros.geometry import invert_transform

    timings = dict.fromkeys(("room", "cloud", "sdf", "place", "camera", "render", "ground_truth"), 0.0)
    seq = _seed(config.seed, config.split, index)
    scene_seed = int(seq.generate_state(1)[0])
    rng = np.random.default_rng(seq)
    t0 = time.perf_counter()
    room = make_room(scene_seed)
    timings["room"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    noise, holes = rng.uniform(*CLOUD_NOISE_M), rng.uniform(*CLOUD_HOLE_FRACTION)
    cloud = room.scene_cloud(noise_m=noise, hole_fraction=holes, seed=scene_seed)
    tree = cKDTree(cloud)
    timings["cloud"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    sdf = room.sdf_grid()
    timings["sdf"] = time.perf_counter() - t0
    scene_id = f"{config.split}-room{index:05d}"
    scene = Scene(scene_id=scene_id, cloud=cloud, pitch=C.SCENE_PITCH_M,
                  mesh_vertices=room.mesh_vertices.astype(np.float32), mesh_faces=room.mesh_faces.astype(np.int32),
                  mesh_face_colors=room.face_colors, sdf=sdf, generator_version=GENERATOR_VERSION, seed=scene_seed,
                  extra={"room_seed": scene_seed, "noise_m": float(noise), "hole_fraction": float(holes),
                         "body_model": body_model_name})
    cameras = camera_pool(config.seed, config.split)
    samples = []
    if config.sequence:
        sequence_rng = np.random.default_rng(_seed(config.seed, config.split, index, "sequence"))
        frames = _sequence(room, cloud, tree, cameras, model_dir, sequence_rng, config, timings)
        for frame, (camera, T_camera_map, image, persons) in enumerate(frames):
            samples.append(Sample(
                key=f"{scene_id}-f{frame:04d}", image=image, K=camera.K, T_map_camera=invert_transform(T_camera_map),
                scene_id=scene_id, persons=persons, distortion_model=camera.distortion_model,
                distortion_coeffs=camera.distortion, sequence_id=scene_id, frame_index=frame, seed=scene_seed,
                split=config.split, extra={"body_model": body_model_name, "generator_version": GENERATOR_VERSION,
                                           "fps": float(config.fps)}))
        return scene, samples, timings
    for frame in range(config.frames_per_scene):
        frame_rng = np.random.default_rng(_seed(config.seed, config.split, index, frame))
        camera, T_camera_map, image, persons = _frame(room, cloud, tree, cameras, model_dir, body_model_name,
                                                      frame_rng, config.people, timings)
        if image is None:
            raise InputError(f"scene {scene_id}: no camera sees anyone after {FRAME_TRIES} tries (room seed "
                             f"{scene_seed}); this is a generator bug, please report it")
        samples.append(Sample(
            key=f"{scene_id}-f{frame:04d}", image=image, K=camera.K, T_map_camera=invert_transform(T_camera_map),
            scene_id=scene_id, persons=persons, distortion_model=camera.distortion_model,
            distortion_coeffs=camera.distortion, frame_index=frame, seed=scene_seed, split=config.split,
            extra={"body_model": body_model_name, "generator_version": GENERATOR_VERSION}))
    return scene, samples, timings


def _generate(args):
    return generate_scene(*args)


def iter_scenes(config: SynthConfig, model_dir: str, body_model_name: str,
                workers: int = 1) -> Iterator[tuple[Scene, list[Sample], dict]]:
    """Yield every scene of ``config`` in index order, generated by ``workers`` processes."""
    jobs = [(config, i, model_dir, body_model_name) for i in range(config.scenes)]
    if workers <= 1:
        yield from map(_generate, jobs)
        return
    ctx = multiprocessing.get_context("spawn")  # torch and Open3D hold threads: never fork them
    with ctx.Pool(min(workers, len(jobs))) as pool:
        yield from pool.imap(_generate, jobs)  # ordered: the output does not depend on `workers`


def synthesize(out_dir: str | Path, config: SynthConfig, workers: int = 1, bags: bool | None = None,
               progress: bool = True, command: Sequence[str] = ()) -> dict:
    """Write ``config``'s split to ``out_dir``: shards, scenes, manifest and (test split) rosbag2 files.

    Args:
        out_dir: the data directory (must not hold a manifest yet).
        config: :class:`SynthConfig`.
        workers: worker processes (the bytes do not depend on it).
        bags: also write the split as rosbag2 files (``DIR/bags/<split>/``) for ``sahmr eval --bag``;
            None: for the test split only.
        progress: show a progress bar.
        command: the command line, recorded in the manifest.

    Returns:
        Statistics: samples, persons, seconds, samples per second, seconds per stage.
    """
    from tqdm import tqdm

    from sahmr_ros.data.shards import ShardWriter
    from sahmr_ros.evaluation.bags import EvalBagWriter

    out_dir = Path(out_dir)
    bags = config.split == "test" if bags is None else bags
    started = time.perf_counter()
    stats = {"samples": 0, "persons": 0, "stages_s": {}}
    with tempfile.TemporaryDirectory(prefix="sahmr_synth_body_") as tmp:
        model_dir, body_model_name = _model_dir(config.model_dir, tmp)
        writer = ShardWriter(out_dir, prefix=config.split, generator_version=GENERATOR_VERSION, seed=config.seed,
                             command=list(command))
        bag_writer = EvalBagWriter(out_dir, config.split) if bags else None
        bar = tqdm(total=config.scenes * config.frames_per_scene, unit="sample", desc=f"sahmr synth {config.split}",
                   disable=not progress, dynamic_ncols=True)
        with writer:
            for scene, samples, timings in iter_scenes(config, model_dir, body_model_name, workers):
                writer.write_scene(scene)
                for sample in samples:
                    writer.write(sample)
                if bag_writer is not None and config.sequence:  # the sequence's own frame period, no detector ids
                    bag_writer.write_bag(scene.scene_id, scene, samples, period_ns=round(C.NS_PER_S / config.fps),
                                         detection_ids="none")
                elif bag_writer is not None:
                    bag_writer.write_bag(scene.scene_id, scene, samples)
                stats["samples"] += len(samples)
                stats["persons"] += sum(len(s.persons) for s in samples)
                for stage, seconds in timings.items():
                    stats["stages_s"][stage] = stats["stages_s"].get(stage, 0.0) + seconds
                bar.update(len(samples))
                bar.set_postfix(persons=stats["persons"], refresh=False)
        bar.close()
        if bag_writer is not None:
            bag_writer.close()
    stats["seconds"] = time.perf_counter() - started
    stats["samples_per_s"] = stats["samples"] / stats["seconds"]
    return stats


def _model_dir(model_dir: str | None, tmp: str) -> tuple[str, str]:
    """(directory, body model name): the user's SMPL directory, or the synthetic body written to ``tmp``."""
    from sahmr_ros.body import validate_model_dir
    from sahmr_ros.body.synthetic import write_synthetic_model_dir

    if model_dir is None:
        return str(write_synthetic_model_dir(tmp)), BODY_MODEL_SYNTHETIC
    path = Path(model_dir)
    bad = [f"{c.status.path}: {c.problem} ({c.status.source})" for c in validate_model_dir(path) if not c.ok]
    if bad:
        raise InputError(f"--model-dir {path}: " + "; ".join(bad))
    synthetic = (path / C.SYNTHETIC_MARKER_FILENAME).exists()
    return str(path), BODY_MODEL_SYNTHETIC if synthetic else BODY_MODEL_SMPL


def default_workers() -> int:
    """Worker processes by default: the CPUs this process may use."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
