"""Loading SMPL model files without chumpy.

The official SMPL ``.pkl`` files are Python-2 pickles whose ``shapedirs`` (and, in some releases,
other arrays) are ``chumpy.ch.Ch`` objects; chumpy does not install on Python >= 3.11. A pickle can
also run arbitrary code when loaded. :class:`RestrictedUnpickler` therefore only admits the classes
such model files contain (numpy arrays and dtypes, scipy CSC/CSR matrices, chumpy arrays mapped to
an inert stub whose ``x`` becomes a numpy array) and refuses everything else with
:class:`~sahmr_ros.errors.InputError` naming the file and the class.

The same reader handles ``.npz`` / ``.npy`` files whose members hold pickled objects (object
arrays), member by member, so a file is never unpickled by numpy's unrestricted loader.

Frame of the body model: metres, y up, the body faces +z, +x is the body's left.
"""

from __future__ import annotations

import codecs
import contextlib
import copyreg
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse
import smplx
import torch
from smplx.utils import Struct

from sahmr_ros import constants as C
from sahmr_ros.errors import InputError, ModelFilesMissingError

__all__ = [
    "RestrictedUnpickler",
    "restricted_load",
    "SMPL_SOURCE_HINT",
    "find_smpl_file",
    "load_body_model",
    "load_smpl_arrays",
    "read_npy",
    "read_npz_member",
    "smpl_data_struct",
]

SMPL_SOURCE_HINT = (
    "SMPL body model: register at https://smpl.is.tue.mpg.de (free registration; licence for "
    "non-commercial research only), download 'SMPL for Python' and put the neutral model here "
    "(also accepted in the same folder: SMPL_NEUTRAL.npz, basicModel_neutral_lbs_10_207_0_v1.0.0.pkl)"
)

_GENDER_FILES = {
    "neutral": C.SMPL_NEUTRAL_FILENAMES,
    "male": ("SMPL_MALE.pkl", "SMPL_MALE.npz", "basicModel_m_lbs_10_207_0_v1.0.0.pkl"),
    "female": ("SMPL_FEMALE.pkl", "SMPL_FEMALE.npz", "basicModel_f_lbs_10_207_0_v1.0.0.pkl"),
}

# Expected shapes; None = any size.
_SMPL_SHAPES = {
    "v_template": (C.NUM_VERTICES, 3),
    "f": (C.NUM_FACES, 3),
    "J_regressor": (C.NUM_SMPL_JOINTS, C.NUM_VERTICES),
    "weights": (C.NUM_VERTICES, C.NUM_SMPL_JOINTS),
    "kintree_table": (2, C.NUM_SMPL_JOINTS),
    "shapedirs": (C.NUM_VERTICES, 3, None),
    "posedirs": (C.NUM_VERTICES, 3, C.NUM_POSE_BASIS),
}
_SMPL_INTEGER_KEYS = ("f", "kintree_table")  # every other checked key holds floats


# --- restricted unpickling ------------------------------------------------------------------------
class _ChumpyObject:
    """Inert stand-in for any chumpy class: keeps the pickled state, evaluates nothing."""

    chumpy_class = "chumpy.?"

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


_CHUMPY_STUBS: dict[str, type] = {}


def _chumpy_stub(module: str, name: str) -> type:
    key = f"{module}.{name}"
    if key not in _CHUMPY_STUBS:
        _CHUMPY_STUBS[key] = type(f"chumpy_{name}", (_ChumpyObject,), {"chumpy_class": key})
    return _CHUMPY_STUBS[key]


def _allowed() -> dict[tuple[str, str], Any]:
    """Map (module, name) -> object for every global a model file may reference (old and new paths)."""
    try:  # numpy >= 2
        from numpy._core import multiarray, numeric
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray, numeric
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        table[(f"{core}.multiarray", "_reconstruct")] = multiarray._reconstruct
        table[(f"{core}.multiarray", "scalar")] = multiarray.scalar
        table[(f"{core}.numeric", "_frombuffer")] = numeric._frombuffer  # protocol-5 arrays
    for kind, cls in (("csc", scipy.sparse.csc_matrix), ("csr", scipy.sparse.csr_matrix)):
        for module in ("scipy.sparse", f"scipy.sparse.{kind}", f"scipy.sparse._{kind}"):
            table[(module, f"{kind}_matrix")] = cls
    for module in ("copy_reg", "copyreg"):
        table[(module, "_reconstructor")] = copyreg._reconstructor
    for module in ("__builtin__", "builtins"):
        table[(module, "object")] = object
        table[(module, "set")] = set  # chumpy keeps a set of dirty terms in its state
        table[(module, "frozenset")] = frozenset
    table[("_codecs", "encode")] = codecs.encode  # bytes objects in protocol-2 pickles
    return table


_ALLOWED = _allowed()


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler for model files: numpy, scipy CSC/CSR, chumpy stubs; anything else is refused.

    Args:
        file: binary file object positioned at the pickle.
        source: the file's name, used in error messages.
    """

    def __init__(self, file: BinaryIO, source: str | Path):
        super().__init__(file, encoding="latin1")
        self._source = str(source)

    def find_class(self, module: str, name: str) -> Any:
        found = _ALLOWED.get((module, name))
        if found is not None:
            return found
        if module == "chumpy" or module.startswith("chumpy."):
            return _chumpy_stub(module, name)
        raise InputError(
            f"{self._source}: refusing to unpickle class '{module}.{name}'; model files may only contain "
            "numpy arrays, scipy sparse matrices and chumpy arrays"
        )


def restricted_load(file: BinaryIO, source: str | Path, unpickler: type | None = None) -> Any:
    """Unpickle ``file`` with :class:`RestrictedUnpickler` (or a subclass ``unpickler``).

    Raises:
        InputError: a refused class, or corrupt or truncated data, naming ``source``.
    """
    try:
        return (unpickler or RestrictedUnpickler)(file, source).load()
    except InputError:
        raise
    except Exception as exc:  # corrupt or truncated data
        raise InputError(f"{source}: not a readable pickle ({type(exc).__name__}: {exc})") from exc


def read_npy(file: BinaryIO, source: str | Path) -> np.ndarray:
    """Read one ``.npy`` stream; object arrays go through :class:`RestrictedUnpickler`."""
    data = io.BytesIO(file.read())
    try:
        version = np.lib.format.read_magic(data)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(data)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(data)
    except Exception as exc:
        raise InputError(f"{source}: not a .npy array ({exc})") from exc
    if dtype.hasobject:
        array = restricted_load(data, source)
        if not isinstance(array, np.ndarray):
            raise InputError(f"{source}: expected a pickled numpy array, got {type(array).__name__}")
        return array
    data.seek(0)
    return np.lib.format.read_array(data, allow_pickle=False)


def read_npz_member(path: str | Path, key: str) -> np.ndarray:
    """Read member ``key`` of an ``.npz`` without touching any other member."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if f"{key}.npy" not in names:
                keys = sorted(n[:-4] for n in names if n.endswith(".npy"))
                raise InputError(f"{path}: missing key {key!r} (has {keys})")
            with archive.open(f"{key}.npy") as member:
                return read_npy(member, f"{path}[{key}]")
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: not an .npz archive ({exc})") from exc


def _npz_keys(path: Path) -> list[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return [n[:-4] for n in archive.namelist() if n.endswith(".npy")]
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path}: not an .npz archive ({exc})") from exc


# --- SMPL arrays ------------------------------------------------------------------------------------
def _to_plain(value: Any, key: str, source: Path) -> Any:
    """Convert chumpy stubs to numpy arrays; leave everything else unchanged."""
    if isinstance(value, _ChumpyObject):
        state = getattr(value, "state", None)
        if isinstance(state, tuple):  # (dict, slots)
            state = state[0]
        if not isinstance(state, dict) or "x" not in state:
            raise InputError(
                f"{source}: key {key!r} is a chumpy expression ({value.chumpy_class}) that needs chumpy to "
                "evaluate; convert the file once with chumpy to .npz (same key names)"
            )
        return np.asarray(state["x"])
    return value


def _check_shapes(arrays: dict[str, Any], source: Path) -> None:
    for key, expected in _SMPL_SHAPES.items():
        if key not in arrays:
            raise InputError(f"{source}: missing key {key!r}; an SMPL model file has {sorted(_SMPL_SHAPES)}")
        shape = tuple(arrays[key].shape)
        if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
            want = tuple("any" if e is None else e for e in expected)
            raise InputError(f"{source}: key {key!r} has shape {shape}, expected {want} (SMPL topology)")
        kind = "iu" if key in _SMPL_INTEGER_KEYS else "f"
        if np.dtype(arrays[key].dtype).kind not in kind:
            want = "integer" if key in _SMPL_INTEGER_KEYS else "floating-point"
            raise InputError(f"{source}: key {key!r} has dtype {arrays[key].dtype}, expected {want} values")


def load_smpl_arrays(path: str | Path) -> dict[str, Any]:
    """Read an SMPL model file (``.pkl`` as distributed, or ``.npz`` with the same keys).

    Args:
        path: the model file.

    Returns:
        The file's entries: numpy arrays (chumpy arrays converted), ``J_regressor`` possibly a
        scipy sparse matrix, strings unchanged. At least ``v_template (6890, 3)``, ``f (13776, 3)``,
        ``J_regressor (24, 6890)``, ``weights (6890, 24)``, ``kintree_table (2, 24)``,
        ``shapedirs (6890, 3, B)`` and ``posedirs (6890, 3, 207)``, with values as stored.

    Raises:
        ModelFilesMissingError: the file does not exist.
        InputError: unreadable file, a refused pickle class, a missing key or a wrong shape.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFilesMissingError([(path, SMPL_SOURCE_HINT)])
    if path.suffix == ".npz":
        raw = {key: read_npz_member(path, key) for key in _npz_keys(path)}
        raw = {k: (v.item() if v.dtype.hasobject and v.shape == () else v) for k, v in raw.items()}
    else:
        with open(path, "rb") as file:
            raw = restricted_load(file, path)
        if not isinstance(raw, dict):
            raise InputError(f"{path}: expected a pickled dict of SMPL arrays, got {type(raw).__name__}")
    arrays = {str(k): _to_plain(v, str(k), path) for k, v in raw.items()}
    _check_shapes(arrays, path)
    return arrays


def smpl_data_struct(arrays: dict[str, Any]) -> Struct:
    """Build the struct ``smplx.SMPL(data_struct=...)`` reads, from :func:`load_smpl_arrays` output.

    ``kintree_table`` becomes int64 with -1 for the root (SMPL stores 2**32 - 1), faces int64,
    dense arrays float64; ``J_regressor`` stays sparse if it is.
    """
    kintree = np.asarray(arrays["kintree_table"]).astype(np.int64)
    kintree[0, 0] = -1
    kintree[0][kintree[0] >= C.NUM_SMPL_JOINTS] = -1
    fields = dict(arrays)
    fields.update(
        v_template=np.asarray(arrays["v_template"], np.float64),
        f=np.asarray(arrays["f"]).astype(np.int64),
        weights=np.asarray(arrays["weights"], np.float64),
        shapedirs=np.asarray(arrays["shapedirs"], np.float64),
        posedirs=np.asarray(arrays["posedirs"], np.float64),
        kintree_table=kintree,
    )
    if not scipy.sparse.issparse(arrays["J_regressor"]):
        fields["J_regressor"] = np.asarray(arrays["J_regressor"], np.float64)
    return Struct(**fields)


def find_smpl_file(model_dir: str | Path, gender: str = "neutral") -> Path | None:
    """Return the SMPL file of ``gender`` in ``model_dir/smpl/`` (first existing candidate), or None.

    ``model_dir`` may also be the model file itself.
    """
    model_dir = Path(model_dir)
    if model_dir.is_file():
        return model_dir
    if gender not in _GENDER_FILES:
        raise InputError(f"gender: expected one of {sorted(_GENDER_FILES)}, got {gender!r}")
    for name in _GENDER_FILES[gender]:
        candidate = model_dir / C.SMPL_SUBDIR / name
        if candidate.is_file():
            return candidate
    return None


def load_body_model(
    model_dir: str | Path,
    gender: str = "neutral",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> smplx.SMPL:
    """Build an ``smplx.SMPL`` from the SMPL file in ``model_dir/smpl/`` without chumpy.

    Args:
        model_dir: model directory (``model_dir/smpl/SMPL_NEUTRAL.pkl`` or an accepted alternative,
            see :data:`sahmr_ros.constants.SMPL_NEUTRAL_FILENAMES`), or the model file itself.
        gender: ``"neutral"`` (what SA-HMR uses), ``"male"`` or ``"female"``.
        device: where the model's buffers live.
        dtype: floating dtype of the model's buffers.

    Returns:
        The model, batch size 1, 10 shape coefficients; call it with ``betas (B, 10)``,
        ``global_orient (B, 3)``, ``body_pose (B, 69)`` (axis-angle) and ``transl (B, 3)``.

    Raises:
        ModelFilesMissingError: no SMPL file found; names the expected path and where to get it.
        InputError: the file is unreadable or not SMPL-shaped.
    """
    path = find_smpl_file(model_dir, gender)
    if path is None:
        expected = Path(model_dir) / C.SMPL_SUBDIR / _GENDER_FILES[gender][0]
        raise ModelFilesMissingError([(expected, SMPL_SOURCE_HINT)])
    struct = smpl_data_struct(load_smpl_arrays(path))
    with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning about 10 betas
        model = smplx.SMPL(model_path=str(path), data_struct=struct, gender=gender, dtype=dtype,
                           num_betas=min(C.NUM_BETAS, struct.shapedirs.shape[-1]))
    return model.to(device)
