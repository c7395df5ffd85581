"""Message construction backends: the same calls build rosbags dataclasses or rclpy messages.

Conversions (:mod:`sahmr_ros.ros.conversions`) build every output message through a
:class:`MessageFactory`, so the node (rclpy) and the offline bag tool (rosbags) publish identical
content:

* ``factory.make("sensor_msgs/msg/PointCloud2", **fields)`` -- a message whose fields not given take
  their ROS 2 default (0, ``""``, empty sequence, default nested message, ``Quaternion.w = 1``).
  Given values are coerced to what the backend wants: numpy arrays for primitive arrays and
  sequences (rosbags) or ``array.array`` / numpy (rclpy), Python ``float`` / ``int`` / ``bool``
  for scalars (rclpy asserts on numpy scalars and on ``int`` in a float field), ``bytes`` for
  rclpy ``byte`` fields (``DiagnosticStatus.level``).
* ``factory.array(np_array)`` -- the backend-native value of a primitive *sequence* field.
* ``factory.points(xyz)`` -- a list of ``geometry_msgs/msg/Point`` built as fast as the backend
  allows (41,328 per SMPL mesh marker).

Neither backend imports rclpy at module import: :class:`RclpyFactory` imports message classes
lazily by name (``"pkg/msg/Name"`` -> ``pkg.msg.Name``).

Stamp helpers: :func:`ns_to_time` (and :func:`sahmr_ros.ros.sync.stamp_to_ns` for the reverse).
"""

from __future__ import annotations

import array
import contextlib
import gc
import importlib
import re
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sahmr_ros.constants import NS_PER_S

__all__ = [
    "MessageFactory",
    "RosbagsFactory",
    "RclpyFactory",
    "ns_to_time",
    "duration_from_seconds",
]


# Default values that ROS 2 message definitions declare and that rosbags' type stores drop.
_DECLARED_DEFAULTS = {"geometry_msgs/msg/Quaternion": {"w": 1.0}}

# ROS base type -> numpy dtype, as rosbags (de)serialises primitive arrays.
_ROSBAGS_DTYPES = {
    "bool": np.bool_, "byte": np.int8, "char": np.uint8, "octet": np.uint8,
    "int8": np.int8, "uint8": np.uint8, "int16": np.int16, "uint16": np.uint16,
    "int32": np.int32, "uint32": np.uint32, "int64": np.int64, "uint64": np.uint64,
    "float32": np.float32, "float64": np.float64,
}
_FLOAT_TYPES = {"float32", "float64", "float", "double"}

# rosidl IDL type names (rclpy ``get_fields_and_field_types``) -> numpy dtype / array.array typecode.
_IDL_DTYPES = {
    "boolean": np.bool_, "octet": np.uint8, "char": np.uint8, "int8": np.int8, "uint8": np.uint8,
    "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
    "int64": np.int64, "uint64": np.uint64, "float": np.float32, "double": np.float64,
}
_TYPECODES = {
    np.dtype(np.int8): "b", np.dtype(np.uint8): "B", np.dtype(np.int16): "h", np.dtype(np.uint16): "H",
    np.dtype(np.int32): "i", np.dtype(np.uint32): "I", np.dtype(np.int64): "q", np.dtype(np.uint64): "Q",
    np.dtype(np.float32): "f", np.dtype(np.float64): "d",
}
_IDL_INT_TYPES = {"int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"}
_IDL_SEQUENCE = re.compile(r"^sequence<\s*([\w/]+)\s*(?:,\s*\d+\s*)?>$")
_IDL_ARRAY = re.compile(r"^([\w/]+)\[(\d+)\]$")


@runtime_checkable
class MessageFactory(Protocol):
    """What conversions need from a message backend."""

    def make(self, msgtype: str, **fields: Any) -> Any:
        """Build a ``msgtype`` (``"pkg/msg/Name"``) message; fields not given take their defaults."""

    def array(self, values: np.ndarray) -> Any:
        """Return the backend-native value of a primitive sequence field holding ``values`` (1-D)."""

    def points(self, xyz: np.ndarray) -> list:
        """``geometry_msgs/msg/Point`` messages, one per row of ``xyz`` (N, 3)."""


def _python_scalar(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


@contextlib.contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector while tens of thousands of small messages are built.

    Each allocation burst would otherwise trigger generation-0 collections that scan the new
    objects again and again (about a third of the build time of a 41,328-point mesh marker).
    Re-enabled only by whoever found it enabled, so nested or concurrent callers are safe.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _flat(value: Any) -> np.ndarray:
    """1-D numpy view of an array-like; bytes-like objects are read as uint8."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return np.frombuffer(value, dtype=np.uint8)
    return np.asarray(value).reshape(-1)


# ------------------------------------------------------------------------------------------------
# rosbags
# ------------------------------------------------------------------------------------------------
class RosbagsFactory:
    """Builds rosbags message dataclasses from a type store's field definitions.

    Args:
        typestore: a rosbags ``Typestore`` (see :func:`sahmr_ros.ros.interfaces.make_typestore`).
    """

    def __init__(self, typestore):
        self.typestore = typestore
        self._plans: dict[str, tuple[type, dict[str, tuple]]] = {}

    def _plan(self, msgtype: str) -> tuple[type, dict[str, tuple]]:
        plan = self._plans.get(msgtype)
        if plan is None:
            if msgtype not in self.typestore.fielddefs:
                raise TypeError(f"message type {msgtype!r} is not in the type store (register it first)")
            _, fields = self.typestore.fielddefs[msgtype]
            plan = (self.typestore.types[msgtype], dict(fields))
            self._plans[msgtype] = plan
        return plan

    def _default(self, desc: tuple) -> Any:
        kind, info = desc
        kind = getattr(kind, "name", kind)
        if kind == "BASE":
            base = info[0]
            if base == "string":
                return ""
            if base == "bool":
                return False
            return 0.0 if base in _FLOAT_TYPES else 0
        if kind == "NAME":
            return self.make(info)
        sub, length = info
        if kind == "ARRAY":
            if getattr(sub[0], "name", sub[0]) == "BASE" and sub[1][0] != "string":
                return np.zeros(length, dtype=_ROSBAGS_DTYPES[sub[1][0]])
            return [self._default(sub) for _ in range(length)]
        # SEQUENCE
        if getattr(sub[0], "name", sub[0]) == "BASE" and sub[1][0] != "string":
            return np.zeros(0, dtype=_ROSBAGS_DTYPES[sub[1][0]])
        return []

    def _coerce(self, msgtype: str, name: str, desc: tuple, value: Any) -> Any:
        kind, info = desc
        kind = getattr(kind, "name", kind)
        if kind == "BASE":
            value = _python_scalar(value)
            if info[0] in _FLOAT_TYPES and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            return value
        if kind in ("ARRAY", "SEQUENCE"):
            sub, length = info
            if getattr(sub[0], "name", sub[0]) == "BASE" and sub[1][0] != "string":
                out = np.ascontiguousarray(_flat(value), dtype=_ROSBAGS_DTYPES[sub[1][0]])
                if kind == "ARRAY" and out.shape[0] != length:
                    raise ValueError(f"{msgtype}.{name}: expected {length} values, got {out.shape[0]}")
                return out
            out = list(value)
            if kind == "ARRAY" and len(out) != length:
                raise ValueError(f"{msgtype}.{name}: expected {length} items, got {len(out)}")
            return out
        return value

    def make(self, msgtype: str, **fields: Any) -> Any:
        """See :meth:`MessageFactory.make`. Unknown field names raise TypeError."""
        cls, defs = self._plan(msgtype)
        unknown = sorted(set(fields) - set(defs))
        if unknown:
            raise TypeError(f"{msgtype} has no field(s) {unknown} (fields: {list(defs)})")
        declared = _DECLARED_DEFAULTS.get(msgtype, {})
        kwargs = {}
        for name, desc in defs.items():
            if name in fields:
                kwargs[name] = self._coerce(msgtype, name, desc, fields[name])
            elif name in declared:
                kwargs[name] = declared[name]
            else:
                kwargs[name] = self._default(desc)
        return cls(**kwargs)

    def array(self, values: np.ndarray) -> np.ndarray:
        """Return the values as one contiguous 1-D numpy vector (no copy if possible), as rosbags stores them."""
        return np.ascontiguousarray(_flat(values))

    def points(self, xyz: np.ndarray) -> list:
        """See :meth:`MessageFactory.points`: positional dataclass construction, no per-field checks."""
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        point = self.typestore.types["geometry_msgs/msg/Point"]
        with _gc_paused():
            return list(map(point, *xyz.T.tolist()))


# ------------------------------------------------------------------------------------------------
# rclpy
# ------------------------------------------------------------------------------------------------
class RclpyFactory:
    """Builds rclpy messages, importing each class lazily (``"pkg/msg/Name"`` -> ``pkg.msg.Name``).

    rclpy fills defaults itself; this class only converts values to what the generated setters
    accept without their slow per-element checks: ``array.array`` (built with ``frombytes``) for
    primitive sequences, numpy arrays of the field's dtype for fixed-size arrays.
    """

    def __init__(self):
        self._classes: dict[str, type] = {}
        self._field_types: dict[str, dict[str, str]] = {}

    def message_class(self, msgtype: str) -> type:
        """Return the generated Python class of ``msgtype`` (``"pkg/msg/Name"``)."""
        cls = self._classes.get(msgtype)
        if cls is None:
            parts = msgtype.split("/")
            if len(parts) != 3 or parts[1] != "msg":
                raise TypeError(f"message type {msgtype!r}: expected 'pkg/msg/Name'")
            module = importlib.import_module(f"{parts[0]}.msg")
            cls = getattr(module, parts[2])
            self._classes[msgtype] = cls
            self._field_types[msgtype] = dict(cls.get_fields_and_field_types())
        return cls

    def _coerce(self, msgtype: str, name: str, typ: str, value: Any) -> Any:
        match = _IDL_SEQUENCE.match(typ)
        if match and match.group(1) in _IDL_DTYPES:
            if isinstance(value, array.array):
                return value
            return self._sequence(_flat(value), _IDL_DTYPES[match.group(1)])
        match = _IDL_ARRAY.match(typ)
        if match and match.group(1) in _IDL_DTYPES and match.group(1) not in ("boolean", "octet"):
            out = np.ascontiguousarray(_flat(value), dtype=_IDL_DTYPES[match.group(1)])
            if out.shape[0] != int(match.group(2)):
                raise ValueError(f"{msgtype}.{name}: expected {match.group(2)} values, got {out.shape[0]}")
            return out
        if match or _IDL_SEQUENCE.match(typ):
            return list(value)
        value = _python_scalar(value)
        if typ in ("float", "double") and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if typ == "octet" and isinstance(value, int):
            return bytes([value])
        if typ == "boolean" and isinstance(value, (int, np.bool_)):
            return bool(value)
        return value

    @staticmethod
    def _sequence(values: np.ndarray, dtype) -> array.array:
        values = np.ascontiguousarray(values, dtype=dtype)
        out = array.array(_TYPECODES[values.dtype])
        out.frombytes(values.tobytes())
        return out

    def make(self, msgtype: str, **fields: Any) -> Any:
        """See :meth:`MessageFactory.make`."""
        cls = self.message_class(msgtype)
        types = self._field_types[msgtype]
        unknown = sorted(set(fields) - set(types))
        if unknown:
            raise TypeError(f"{msgtype} has no field(s) {unknown} (fields: {list(types)})")
        return cls(**{k: self._coerce(msgtype, k, types[k], v) for k, v in fields.items()})

    def array(self, values: np.ndarray) -> array.array:
        """``array.array`` with the typecode of ``values.dtype`` (rclpy's primitive sequences)."""
        values = _flat(values)
        if values.dtype not in _TYPECODES:
            raise TypeError(f"no array.array typecode for dtype {values.dtype} (use a numeric dtype)")
        return self._sequence(values, values.dtype)

    def points(self, xyz: np.ndarray) -> list:
        """See :meth:`MessageFactory.points`."""
        point = self.message_class("geometry_msgs/msg/Point")
        xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
        with _gc_paused():
            return [point(x=x, y=y, z=z) for x, y, z in xyz.tolist()]


# ------------------------------------------------------------------------------------------------
# stamps
# ------------------------------------------------------------------------------------------------
def ns_to_time(factory: MessageFactory, ns: int) -> Any:
    """``builtin_interfaces/msg/Time`` for ``ns`` nanoseconds (``nanosec`` always in [0, 1e9))."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return factory.make("builtin_interfaces/msg/Time", sec=sec, nanosec=nanosec)


def duration_from_seconds(factory: MessageFactory, seconds: float) -> Any:
    """``builtin_interfaces/msg/Duration`` of ``seconds`` (rounded to the nanosecond)."""
    sec, nanosec = divmod(int(round(float(seconds) * NS_PER_S)), NS_PER_S)
    return factory.make("builtin_interfaces/msg/Duration", sec=sec, nanosec=nanosec)
