"""The one domain error family of sahmr_ros.

Every message names the offending field (or file) and says how to fix it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


class SahmrError(Exception):
    """Base class of every error sahmr_ros raises on purpose."""


class InputError(SahmrError, ValueError):
    """An input (argument, message field, file content) is malformed.

    The message names the field, what was received, and what is expected.
    """


class MessageError(InputError):
    """A ROS message (or one of its fields) cannot be used.

    The message reads ``"[<topic>: ]<field>: <detail>"``, e.g.
    ``"image.encoding: 'mono16' is not supported (use rgb8, bgr8, rgba8, bgra8 or mono8)"``.

    Attributes:
        field: dotted path of the offending field (``"image.encoding"``,
            ``"detections[2].bbox.size_x"``).
        detail: what is wrong and how to fix it.
        topic: the topic the message came from, or None when unknown.
    """

    def __init__(self, field: str, detail: str, topic: str | None = None):
        self.field = field
        self.detail = detail
        self.topic = topic
        prefix = f"{topic}: " if topic else ""
        super().__init__(f"{prefix}{field}: {detail}")

    def __reduce__(self):
        return (type(self), (self.field, self.detail, self.topic))


class ModelFilesMissingError(SahmrError, FileNotFoundError):
    """One or more model files are missing.

    Attributes:
        missing: ``(path, where_to_get_it)`` for every missing file.
    """

    def __init__(self, missing: Iterable[tuple[Path | str, str]]):
        self.missing = [(Path(p), hint) for p, hint in missing]
        lines = [f"  - {p}: {hint}" for p, hint in self.missing]
        super().__init__(
            "missing model files (see models/README.md for the full list):\n" + "\n".join(lines)
        )


class CheckpointError(SahmrError):
    """A checkpoint file is unreadable, corrupt, or belongs to another preset."""
