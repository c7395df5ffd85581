"""Data of sahmr_ros: procedural rooms and people, sample layout, shards, torch datasets, official data.

No ROS imports. See :mod:`sahmr_ros.data.sample` for the layout of one sample and one scene.
"""

from __future__ import annotations

from sahmr_ros.data.placement import (
    CONTACT_THRESHOLD_M,
    PENETRATION_TOLERANCE_M,
    PlacedPerson,
    PlacementError,
    place_person,
    place_walker,
    sample_person,
    supports_for,
)
from sahmr_ros.data.poses import CATEGORIES
from sahmr_ros.data.rooms import DEMO_ROOM_SEED, Furniture, Lighting, Room, Support, make_room
from sahmr_ros.data.dataset import SceneCache, ShardIndex, ShardStream, collate_samples
from sahmr_ros.data.official import OfficialProxQuant, OfficialRichTest, detect_official, open_official
from sahmr_ros.data.sample import Person, Sample, Scene
from sahmr_ros.data.shards import ShardReader, ShardWriter, read_manifest, read_scene

__all__ = [
    "CATEGORIES",
    "CONTACT_THRESHOLD_M",
    "DEMO_ROOM_SEED",
    "Furniture",
    "Lighting",
    "PENETRATION_TOLERANCE_M",
    "PlacedPerson",
    "PlacementError",
    "Room",
    "Support",
    "make_room",
    "place_person",
    "place_walker",
    "sample_person",
    "supports_for",
    "OfficialProxQuant",
    "OfficialRichTest",
    "Person",
    "Sample",
    "Scene",
    "SceneCache",
    "ShardIndex",
    "ShardReader",
    "ShardStream",
    "ShardWriter",
    "collate_samples",
    "detect_official",
    "open_official",
    "read_manifest",
    "read_scene",
]
