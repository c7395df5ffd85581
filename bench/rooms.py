"""Time the procedural rooms and the people placed in them (sahmr_ros.data.rooms / placement).

Usage: ``python bench/rooms.py [--rooms 10] [--threads 1]``. Prints medians in ms: room build, scan
cloud (2 cm), SDF grid (5 cm, 10 cm margin), and one placement per pose category (successes / tries).
Data workers run torch single-threaded; batches of a few bodies are fastest that way.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sahmr_ros.body import load_body_assets, load_body_model  # noqa: E402
from sahmr_ros.body.synthetic import write_synthetic_model_dir  # noqa: E402
from sahmr_ros.data import poses as P  # noqa: E402
from sahmr_ros.data.placement import PlacementError, place_person, supports_for  # noqa: E402
from sahmr_ros.data.rooms import make_room  # noqa: E402


def _ms(f) -> tuple[float, object]:
    start = time.perf_counter()
    out = f()
    return 1000 * (time.perf_counter() - start), out


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model_dir = write_synthetic_model_dir(Path(tempfile.mkdtemp()) / "synthetic")
    model, parts = load_body_model(model_dir), load_body_assets(model_dir).part_ids_6890
    build, cloud, grid = [], [], []
    placement = {c: [] for c in P.CATEGORIES}
    failed = {c: 0 for c in P.CATEGORIES}
    for seed in range(args.rooms):
        t, room = _ms(lambda: make_room(seed))
        build.append(t)
        cloud.append(_ms(room.scene_cloud)[0])
        grid.append(_ms(room.sdf_grid)[0])
        rng = np.random.default_rng(seed)
        for category in P.CATEGORIES:
            supports = supports_for(room, category)
            if not supports:
                continue
            support = int(supports[rng.integers(len(supports))])
            try:
                placement[category].append(_ms(lambda: place_person(model, room, support, category, rng,
                                                                    part_ids=parts))[0])
            except PlacementError:
                failed[category] += 1
    print(f"torch threads {torch.get_num_threads()}, {args.rooms} rooms; medians in ms")
    print(f"room build {np.median(build):.1f}, scan cloud {np.median(cloud):.0f}, SDF grid {np.median(grid):.0f}")
    for category, times in placement.items():
        tries = len(times) + failed[category]
        median = f"{np.median(times):.0f}" if times else "n/a"
        print(f"  {category:16s} {median:>5s} ms  placed {len(times)}/{tries}")


if __name__ == "__main__":
    main()
