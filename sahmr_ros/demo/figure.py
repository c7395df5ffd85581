"""The demo's result figure: the camera image with the recovered meshes, and a top view of the room.

Left panel: the camera image, each person's estimated mesh (projected to pixels) filled
semi-transparently with its outline, and the person boxes. Right panel: the map frame seen from
above (x right, y up on the page): the room points as a top-view height map (floor light grey,
furniture darker, walls darkest), the camera and its viewing
direction, ground-truth roots (stars), estimated roots (crosses) and the predicted contact points
coloured by body part (``constants.CONTACT_PART_COLORS``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from sahmr_ros.constants import CONTACT_PART_COLORS, CONTACT_PART_NAMES
from sahmr_ros.demo.render import rasterize_coverage
from sahmr_ros.errors import InputError

_PERSON_COLORS = ((255, 80, 80), (80, 170, 255), (120, 220, 90), (250, 190, 40), (200, 110, 240))
_MESH_ALPHA = 0.45
_TOP_VIEW_CELL_M = 0.04  # top-view raster of the room points
_CAMERA_ARROW_M = 0.7


def _points(name: str, value, width: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim == 1 and array.size == 0:
        array = array.reshape(0, width)
    if array.ndim != 2 or array.shape[1] != width:
        raise InputError(f"{name}: expected shape (N, {width}), got {array.shape}")
    return array


def _person_color(i: int, scale: float = 255.0) -> tuple[float, float, float]:
    return tuple(c / 255.0 * scale for c in _PERSON_COLORS[i % len(_PERSON_COLORS)])


def _overlay_meshes(image: np.ndarray, projected_vertices, faces) -> tuple[np.ndarray, list]:
    """Return the image with each mesh's coverage blended in, and the coverage masks."""
    height, width = image.shape[:2]
    blended = image.astype(np.float64)
    masks = []
    for i, uv in enumerate(projected_vertices):
        if uv is None:
            masks.append(None)
            continue
        mask = rasterize_coverage(_points(f"projected_vertices[{i}]", uv, 2), faces, width, height)
        blended[mask] = (1 - _MESH_ALPHA) * blended[mask] + _MESH_ALPHA * np.array(_person_color(i))
        masks.append(mask)
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), masks


def _top_view_points(ax, room_points: np.ndarray) -> None:
    """Draw the room points from above as a height map.

    One grey cell per occupied top-view cell, darker where the highest point in it is higher (floor
    light, furniture mid, walls dark).
    """
    if len(room_points) == 0:
        return
    cells = np.floor(room_points[:, :2] / _TOP_VIEW_CELL_M).astype(np.int64)
    lo = cells.min(axis=0)
    cells -= lo
    shape = cells.max(axis=0) + 1
    height = np.full(shape, -np.inf)
    np.maximum.at(height, (cells[:, 0], cells[:, 1]), room_points[:, 2])
    grey = 0.88 - 0.5 * np.clip(height / 1.5, 0.0, 1.0)
    rgba = np.ones((*shape, 4))
    rgba[..., :3] = grey[..., None]
    rgba[np.isinf(height)] = (1.0, 1.0, 1.0, 0.0)
    x0, y0 = lo * _TOP_VIEW_CELL_M
    x1, y1 = (lo + shape) * _TOP_VIEW_CELL_M
    # imshow rows are the first axis: transpose so that rows run along map y, origin at the bottom.
    ax.imshow(rgba.transpose(1, 0, 2), origin="lower", extent=(x0, x1, y0, y1),
              interpolation="nearest", zorder=1)


def write_demo_figure(
    path,
    image_rgb: np.ndarray,
    boxes,
    projected_vertices: Sequence[np.ndarray | None] | None,
    faces,
    room_points_map,
    camera_position_map,
    camera_forward_map,
    gt_roots_map,
    est_roots_map,
    contact_points_map: Sequence[np.ndarray],
    contact_labels: Sequence[np.ndarray],
    title_lines: Sequence[str],
    *,
    size_px: tuple[int, int] = (1400, 640),
    dpi: int = 100,
) -> Path:
    """Write the two-panel demo figure as a PNG of exactly ``size_px`` (width, height) pixels.

    Args:
        path: output PNG path (parent folders are created).
        image_rgb: (H, W, 3) uint8 camera image.
        boxes: (N, 4) person boxes ``x0, y0, x1, y1`` in pixels.
        projected_vertices: per person, the estimated mesh's (6890, 2) pixel coordinates (NaN
            behind the camera), or ``None`` for no mesh; ``None`` altogether for no meshes.
        faces: (F, 3) mesh faces (SMPL topology), used when meshes are given.
        room_points_map: (M, 3) scene points, map frame, metres.
        camera_position_map: (3,) camera centre, map frame.
        camera_forward_map: (3,) optical axis direction, map frame.
        gt_roots_map: (G, 3) ground-truth roots (G may be 0).
        est_roots_map: (N, 3) estimated roots.
        contact_points_map: per person, (k, 3) contact points, map frame.
        contact_labels: per person, (k,) labels in 0..7 (``constants.CONTACT_PART_NAMES``).
        title_lines: text printed above the panels, one line each.
        size_px: figure size in pixels.
        dpi: resolution used to convert ``size_px`` to inches.

    Returns:
        The path written.
    """
    image = np.asarray(image_rgb)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"image_rgb: expected (H, W, 3) uint8, got {image.shape} {image.dtype}")
    boxes = _points("boxes", boxes, 4)
    room_points = _points("room_points_map", room_points_map, 3)
    gt_roots = _points("gt_roots_map", gt_roots_map, 3)
    est_roots = _points("est_roots_map", est_roots_map, 3)
    camera = np.asarray(camera_position_map, dtype=np.float64).reshape(-1)
    forward = np.asarray(camera_forward_map, dtype=np.float64).reshape(-1)
    if camera.shape != (3,) or forward.shape != (3,):
        raise InputError(f"camera_position_map, camera_forward_map: expected (3,), got "
                         f"{camera.shape}, {forward.shape}")
    if len(contact_points_map) != len(contact_labels):
        raise InputError(f"contact_points_map, contact_labels: lengths differ "
                         f"({len(contact_points_map)} vs {len(contact_labels)})")
    projected_vertices = [] if projected_vertices is None else list(projected_vertices)

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A bare Figure on an Agg canvas: no pyplot, so no global backend state and nothing to close.
    fig = Figure(figsize=(size_px[0] / dpi, size_px[1] / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    title_space = 0.045 * max(1, len(title_lines)) + 0.02
    fig.text(0.01, 0.99, "\n".join(title_lines), va="top", ha="left", fontsize=11,
             family="monospace")
    top = 1.0 - title_space

    # --- left: camera image with meshes and boxes ---------------------------------------------
    ax_image = fig.add_axes((0.005, 0.02, 0.49, top - 0.03))
    shown, masks = _overlay_meshes(image, projected_vertices, faces)
    ax_image.imshow(shown, interpolation="nearest")
    for i, mask in enumerate(masks):
        if mask is not None and mask.any():
            ax_image.contour(mask.astype(float), levels=[0.5], colors=[_person_color(i, 1.0)],
                             linewidths=1.0)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        ax_image.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, linewidth=1.5,
                                     edgecolor=_person_color(i, 1.0)))
        ax_image.text(x0, y0 - 4, f"person {i}", color=_person_color(i, 1.0), fontsize=9,
                      va="bottom")
    ax_image.set_xlim(-0.5, image.shape[1] - 0.5)
    ax_image.set_ylim(image.shape[0] - 0.5, -0.5)
    ax_image.set_axis_off()
    ax_image.set_title("camera image + estimated mesh", fontsize=10)

    # --- right: top view of the map ------------------------------------------------------------
    ax_top = fig.add_axes((0.53, 0.08, 0.31, top - 0.12))
    _top_view_points(ax_top, room_points)
    direction = forward[:2]
    if np.linalg.norm(direction) > 1e-9:
        direction = direction / np.linalg.norm(direction) * _CAMERA_ARROW_M
        ax_top.annotate("", xy=camera[:2] + direction, xytext=camera[:2], zorder=4,
                        arrowprops=dict(arrowstyle="->", color="black", linewidth=1.5))
    ax_top.plot(*camera[:2], marker="s", color="black", markersize=7, linestyle="", zorder=4)
    for labels_i, (points_i, labels) in enumerate(zip(contact_points_map, contact_labels)):
        points_i = _points(f"contact_points_map[{labels_i}]", points_i, 3)
        labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        if len(labels) != len(points_i):
            raise InputError(f"contact_labels[{labels_i}]: expected {len(points_i)} labels, "
                             f"got {len(labels)}")
        if len(labels) and (labels.min() < 0 or labels.max() >= len(CONTACT_PART_NAMES)):
            raise InputError(f"contact_labels[{labels_i}]: labels outside 0..7")
        colors = np.asarray(CONTACT_PART_COLORS, dtype=np.float64)[labels] / 255.0
        ax_top.scatter(points_i[:, 0], points_i[:, 1], c=colors, s=10, linewidths=0, zorder=3)
    for i, root in enumerate(gt_roots):
        ax_top.plot(*root[:2], marker="*", markersize=14, color=_person_color(i, 1.0),
                    markeredgecolor="black", linestyle="", zorder=5)
    for i, root in enumerate(est_roots):
        ax_top.plot(*root[:2], marker="x", markersize=11, markeredgewidth=2.5,
                    color=_person_color(i, 1.0), linestyle="", zorder=6)

    extent = [room_points[:, :2]] if len(room_points) else []
    extent = np.concatenate(extent + [camera[None, :2], gt_roots[:, :2], est_roots[:, :2]])
    lo, hi = extent.min(axis=0) - 0.3, extent.max(axis=0) + 0.3
    ax_top.set_xlim(lo[0], hi[0])
    ax_top.set_ylim(lo[1], hi[1])
    ax_top.set_aspect("equal", adjustable="box")
    ax_top.set_xlabel("map x [m]")
    ax_top.set_ylabel("map y [m]")
    ax_top.set_title("top view (map frame)", fontsize=10)
    ax_top.tick_params(labelsize=8)

    handles = [
        Line2D([], [], marker="*", markersize=12, color="grey", markeredgecolor="black",
               linestyle="", label="ground-truth root"),
    ] if len(gt_roots) else []
    handles += [
        Line2D([], [], marker="x", markersize=9, markeredgewidth=2.5, color="grey",
               linestyle="", label="estimated root"),
        Line2D([], [], marker="s", color="black", linestyle="", label="camera"),
    ]
    handles += [
        Line2D([], [], marker="o", markersize=7, linestyle="", label=name,
               color=np.asarray(CONTACT_PART_COLORS[label]) / 255.0)
        for label, name in enumerate(CONTACT_PART_NAMES)
        if label > 0
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(0.84, 0.45), fontsize=9,
               title="contact parts / markers", title_fontsize=9, frameon=False)
    fig.savefig(path, dpi=dpi, format="png")
    return path
