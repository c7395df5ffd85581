"""Import an official SA-HMR release checkpoint (``sahmr_rich_e30.pth``, ``sahmr_prox_e30.pth``).

The release file is ``{"network": {"net." + key: tensor}, "epoch": int}`` (official
``lib/utils/net_utils.py``). Every key is mapped onto the ``official`` preset:

* HRNet trunks, RCNet head, SPVCNN batch norms and linears, mesh-network blocks: same names
  (two mesh-network renames, see :data:`sahmr_ros.networks.mesh_network.OFFICIAL_KEY_RENAMES`);
* torchsparse 1.4 sparse-conv kernels ``X.kernel`` (K^3, Cin, Cout) -> spconv ``X.conv.weight``
  (Cout, k, k, k, Cin), with torchsparse's offset orders (x-fastest 3x3x3, z-fastest 2x2x2);
  1x1x1 kernels (Cin, Cout) -> ``X.weight`` (Cout, Cin) of a linear map;
* dropped, because the official forward never uses them: :data:`UNUSED_OFFICIAL_KEY_PARTS`.

Nothing is written unless every expected key is produced with the right shape; otherwise the error
lists missing, unexpected and shape-mismatched keys. The source is read with
``torch.load(weights_only=True)``: no pickled code is executed.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from sahmr_ros import constants as C
from sahmr_ros.checkpoint import save_checkpoint
from sahmr_ros.errors import CheckpointError
from sahmr_ros.io import sha256_file
from sahmr_ros.networks.mesh_network import local_key as mesh_local_key
from sahmr_ros.networks.sahmr import SAHMR, SAHMRConfig
from sahmr_ros.networks.sparse import kernel_from_torchsparse

__all__ = ["CONVERTER_VERSION", "UNUSED_OFFICIAL_KEY_PARTS", "convert_official_state_dict", "import_checkpoint",
           "expected_official_shapes"]

CONVERTER_VERSION = "1"
OFFICIAL_PREFIX = "net."
# Official modules that the official forward never calls (BERT word/position/token-type embeddings
# and pooler of each mesh block; the ImageNet classifier of the mesh backbone).
UNUSED_OFFICIAL_KEY_PARTS = (".bert.embeddings.", ".bert.pooler.", "metro_enhanced.backbone.classifier.")
_LIST_LIMIT = 20


def _local_key(key: str) -> str | None:
    """Our state_dict key for an official key (without ``net.``); None for unused modules."""
    if any(p in key for p in UNUSED_OFFICIAL_KEY_PARTS):
        return None
    if key.startswith("metro_enhanced.backbone."):
        return "mesh_network.backbone." + key[len("metro_enhanced.backbone."):]
    if key.startswith("metro_enhanced."):
        local = mesh_local_key("net." + key)
        return None if local is None else "mesh_network." + local
    if key.startswith("rcnet.contact_net.") and key.endswith(".kernel"):
        return key[: -len(".kernel")] + ".KERNEL"  # resolved by _convert_kernel from its shape
    return key


def _convert_kernel(stem: str, kernel: torch.Tensor) -> tuple[str, torch.Tensor]:
    if kernel.dim() == 2:  # 1x1x1 kernel (Cin, Cout) -> Linear weight (Cout, Cin)
        return stem + ".weight", kernel.t().contiguous()
    if kernel.dim() == 3 and kernel.shape[0] in (8, 27):
        return stem + ".conv.weight", kernel_from_torchsparse(kernel, 2 if kernel.shape[0] == 8 else 3)
    raise CheckpointError(f"{stem}.kernel: unexpected torchsparse kernel shape {tuple(kernel.shape)}")


def convert_official_state_dict(network: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map an official ``ckpt["network"]`` dict onto the ``official`` preset's keys and layouts.

    Returns:
        (converted state_dict, list of official keys dropped as unused).
    """
    out, dropped = {}, []
    for key, value in network.items():
        if not key.startswith(OFFICIAL_PREFIX):
            out[f"<unprefixed>{key}"] = value  # reported as unexpected
            continue
        local = _local_key(key[len(OFFICIAL_PREFIX):])
        if local is None:
            dropped.append(key)
        elif local.endswith(".KERNEL"):
            name, tensor = _convert_kernel(local[: -len(".KERNEL")], value)
            out[name] = tensor
        else:
            out[local] = value
    return out, dropped


def _dummy_body() -> SimpleNamespace:
    """Stand-in body assets with the right shapes: only the state_dict layout is needed."""
    return SimpleNamespace(
        template_joints14=torch.zeros(C.NUM_JOINTS14, 3),
        template_vertices431=torch.zeros(C.NUM_VERTICES_COARSE, 3),
        part_ids_431=torch.arange(C.NUM_VERTICES_COARSE) % C.NUM_CONTACT_CLASSES,
        j_regressor_h36m=torch.zeros(C.NUM_H36M_JOINTS, C.NUM_VERTICES),
    )


def expected_official_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the ``official`` preset's state_dict (built on the meta device, no memory)."""
    body = _dummy_body()
    with torch.device("meta"):
        model = SAHMR(SAHMRConfig.official(), body)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _report(missing, unexpected, mismatched) -> str:
    def block(title, items):
        if not items:
            return ""
        more = f" ... and {len(items) - _LIST_LIMIT} more" if len(items) > _LIST_LIMIT else ""
        return f"\n  {title} ({len(items)}): " + ", ".join(items[:_LIST_LIMIT]) + more

    return block("missing", missing) + block("unexpected", unexpected) + block("shape mismatch", mismatched)


def import_checkpoint(source: str | Path, output: str | Path) -> Path:
    """Convert an official release ``.pth`` into a sahmr_ros checkpoint of the ``official`` preset.

    Raises:
        CheckpointError: unreadable source, no ``network`` dict, or keys/shapes that do not fit
            (nothing is written then).
    """
    source, output = Path(source), Path(output)
    if not source.is_file():
        raise CheckpointError(f"{source}: no such file (the official release .pth, see models/README.md)")
    try:
        try:
            payload = torch.load(source, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) files cannot be memory-mapped
            payload = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{source}: unreadable as a weights-only torch file ({type(exc).__name__}: {exc})") \
            from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("network"), dict):
        raise CheckpointError(f"{source}: not an official SA-HMR checkpoint (expected a dict with a 'network' dict)")

    converted, dropped = convert_official_state_dict(payload["network"])
    expected = expected_official_shapes()
    missing = sorted(k for k in expected if k not in converted)
    unexpected = sorted(k for k in converted if k not in expected)
    mismatched = sorted(
        f"{k} {tuple(converted[k].shape)} != {expected[k]}"
        for k in expected
        if k in converted and tuple(converted[k].shape) != expected[k]
    )
    if missing or unexpected or mismatched:
        raise CheckpointError(f"{source}: does not fit the official preset; nothing written:"
                              + _report(missing, unexpected, mismatched))
    metadata = {
        "source_file": source.name,
        "source_sha256": sha256_file(source),
        "source_epoch": int(payload.get("epoch", -1)) if isinstance(payload.get("epoch", -1), int) else -1,
        "converter": "sahmr_ros.importer",
        "converter_version": CONVERTER_VERSION,
        "dropped_unused_keys": len(dropped),
    }
    holder = torch.nn.Module()
    holder.state_dict = lambda: converted  # save_checkpoint only reads state_dict()
    return save_checkpoint(output, holder, "official", metadata)
