"""The weights shipped inside the package: the embedded default's checkpoint and its model card.

Files of this directory (installed with the package: setup.py ``package_data`` for pip, CMakeLists'
``install(DIRECTORY sahmr_ros/)`` for colcon)::

    small_synthetic.pt     sahmr_ros checkpoint (small preset; fp16 storage, upcast to float32 on load)
    small_synthetic.json   machine-readable model card: data recipe, training, held-out metrics of these
                           weights and of the untrained default, a small ``check`` split with its metrics
    MODEL_CARD.md          the same card for people, generated from the JSON
                           (:func:`sahmr_ros.evaluation.card.render_model_card`)

All three are written by ``bench/model_card.py``. The card records the checkpoint's size and sha256:
:func:`shipped_weights` refuses a checkpoint that does not match its card (corrupt, truncated, or
replaced without regenerating the card), so every number printed about the default is about the file
that is loaded. :meth:`sahmr_ros.pipeline.Pipeline.embedded_default` loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from sahmr_ros.errors import CheckpointError
from sahmr_ros.io import sha256_file

__all__ = [
    "CARD_FILENAME",
    "CARD_FORMAT",
    "CARD_FORMAT_VERSION",
    "CHECKPOINT_FILENAME",
    "MAX_CHECKPOINT_BYTES",
    "MODEL_CARD_FILENAME",
    "NAME",
    "RESTORE_HINT",
    "WEIGHTS_DIR",
    "ShippedWeights",
    "describe",
    "display_path",
    "read_card",
    "shipped_weights",
]

WEIGHTS_DIR = Path(__file__).resolve().parent
NAME = "small_synthetic"
CHECKPOINT_FILENAME = f"{NAME}.pt"
CARD_FILENAME = f"{NAME}.json"
MODEL_CARD_FILENAME = "MODEL_CARD.md"
CARD_FORMAT = "sahmr_ros.model_card"
CARD_FORMAT_VERSION = 1
# the package must stay small enough to ship in a wheel and a git checkout
MAX_CHECKPOINT_BYTES = 40_000_000
RESTORE_HINT = ("restore the shipped files with `git checkout sahmr_ros/weights/` (source checkout) or reinstall "
                "sahmr_ros (pip install --force-reinstall, or colcon build)")


def display_path(filename: str) -> str:
    """Return how messages name a shipped file: ``sahmr_ros/weights/<filename>``, wherever installed."""
    return f"sahmr_ros/weights/{filename}"


def read_card(directory: str | Path | None = None) -> dict:
    """Read the machine-readable model card (``small_synthetic.json``).

    Raises:
        CheckpointError: the card is missing, not JSON, or not a model card; the message names the
            file and how to restore it.
    """
    path = Path(directory or WEIGHTS_DIR) / CARD_FILENAME
    where = f"model card {display_path(CARD_FILENAME)} ({path})"
    if not path.is_file():
        raise CheckpointError(f"{where}: no such file; {RESTORE_HINT}")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{where}: unreadable ({exc}); {RESTORE_HINT}") from exc
    if not isinstance(card, dict) or card.get("format") != CARD_FORMAT:
        raise CheckpointError(f"{where}: not a sahmr_ros model card (no format='{CARD_FORMAT}'); {RESTORE_HINT}")
    if card.get("format_version") != CARD_FORMAT_VERSION:
        raise CheckpointError(f"{where}: format_version {card.get('format_version')!r} is not supported (this "
                              f"sahmr_ros reads {CARD_FORMAT_VERSION}); {RESTORE_HINT}")
    return card


def describe(card: dict) -> str:
    """Return the one-line description of the shipped weights, from their card.

    E.g. ``embedded default: small preset trained on synthetic data (sahmr_ros/weights/small_synthetic.pt,
    rcnet 1289 + mesh 882 training steps; model card sahmr_ros/weights/MODEL_CARD.md)``.
    """
    stages = card.get("training", {}).get("stages", [])
    steps = " + ".join(f"{s['stage']} {s['steps']}" for s in stages if "steps" in s)
    steps = f", {steps} training steps" if steps else ""
    return (f"embedded default: {card.get('summary', 'shipped weights')} ({display_path(CHECKPOINT_FILENAME)}"
            f"{steps}; model card {display_path(MODEL_CARD_FILENAME)})")


@dataclass(frozen=True)
class ShippedWeights:
    """The shipped checkpoint, checked against its card.

    Attributes:
        checkpoint: path of the ``.pt`` file.
        card: the parsed ``small_synthetic.json``.
        description: :func:`describe` of the card.
    """

    checkpoint: Path
    card: dict
    description: str


def shipped_weights(directory: str | Path | None = None) -> ShippedWeights:
    """Locate the shipped checkpoint and check it against its model card (size and sha256).

    Args:
        directory: where the files are (default: this package directory).

    Raises:
        CheckpointError: the checkpoint or the card is missing, unreadable or they do not match; one
            message naming the file and how to restore it.
    """
    directory = Path(directory or WEIGHTS_DIR)
    path = directory / CHECKPOINT_FILENAME
    where = f"embedded default weights {display_path(CHECKPOINT_FILENAME)} ({path})"
    if not path.is_file():
        raise CheckpointError(f"{where}: no such file; {RESTORE_HINT}")
    card = read_card(directory)
    recorded = card.get("weights", {})
    size = path.stat().st_size
    if size != recorded.get("bytes"):
        raise CheckpointError(f"{where}: {size} bytes, its model card says {recorded.get('bytes')}: the file is "
                              f"truncated or corrupt, or was replaced without regenerating the card "
                              f"(bench/model_card.py); {RESTORE_HINT}")
    digest = sha256_file(path)
    if digest != recorded.get("sha256"):
        raise CheckpointError(f"{where}: sha256 {digest[:16]}... differs from its model card's "
                              f"{str(recorded.get('sha256'))[:16]}...: the file is corrupt, or was replaced "
                              f"without regenerating the card (bench/model_card.py); {RESTORE_HINT}")
    return ShippedWeights(path, card, describe(card))
