"""Data sets of sahmr_ros: the sample and scene layout, sharded storage, torch datasets, official data.

No ROS imports. See :mod:`sahmr_ros.data.sample` for the layout of one sample and one scene.
"""

from __future__ import annotations

from sahmr_ros.data.dataset import SceneCache, ShardIndex, ShardStream, collate_samples
from sahmr_ros.data.official import OfficialProxQuant, OfficialRichTest, detect_official, open_official
from sahmr_ros.data.sample import Person, Sample, Scene
from sahmr_ros.data.shards import ShardReader, ShardWriter, read_manifest, read_scene

__all__ = [
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
