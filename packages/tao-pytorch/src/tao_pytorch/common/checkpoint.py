"""Checkpoint files: written atomically, optionally encrypted, loaded without unpickling code.

Format: what `torch.save` writes (a zip of tensors and plain containers); with a key, those
bytes wrapped by `tao_core.crypto` (AES-GCM). Loading always uses `weights_only=True`, so a
checkpoint can hold tensors, numbers, strings, lists and dicts, never arbitrary objects.

Weights are accepted in the layouts users have:
- ours / TAO's Lightning checkpoints: {"state_dict": {"model.<name>": tensor, ...}, ...}
- TAO's older exports with a second prefix: "model.model.<name>"
- the reference repos (IDEA-Research/DINO, fundamentalvision/Deformable-DETR): {"model": {...}}
- a bare state dict.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from tao_core.crypto import decrypt_bytes, encrypt_bytes, is_encrypted
from tao_core.errors import TaoUserError
from tao_core.io.atomic import atomic_write_bytes
from tao_core.io.paths import require_file

log = logging.getLogger(__name__)

_PREFIXES = ("model.model.", "model.", "module.")
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's format since 1.6
_PICKLE_PROTO = b"\x80"  # the legacy torch.save format starts with a pickle protocol opcode


def save_checkpoint(obj: Any, path: str | os.PathLike, key: str | None = None) -> None:
    """Serialize `obj` with torch.save, encrypt with `key` if given, write atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    data = buffer.getvalue()
    atomic_write_bytes(path, encrypt_bytes(data, key) if key else data)


def _not_weights_reason(err: Exception) -> str:
    """What torch's refusal says about the object, without its advice to load unsafely."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
    return f" (it references {found.group(1)})" if found else ""


def load_checkpoint(path: str | os.PathLike, key: str | None = None, map_location: Any = "cpu",
                    field: str = "checkpoint") -> Any:
    """Load a checkpoint written by `save_checkpoint` (or plain torch.save) safely.

    Every failure is one TaoUserError naming the file: missing, a directory, unreadable,
    encrypted without a key, wrong key, not a checkpoint at all (random bytes), or a pickle
    holding objects other than weights (never loaded, and never a suggestion to load it unsafely).
    """
    require_file(path, field, "checkpoint file (.pth)")
    with open(path, "rb") as f:
        data = f.read()
    if is_encrypted(data):
        if not key:
            raise TaoUserError(f"{path} is encrypted: pass its key with -k (or encryption_key in the spec)")
        data = decrypt_bytes(data, key, source=path)
    if not (data.startswith(_ZIP_MAGIC) or data.startswith(_PICKLE_PROTO)):
        raise TaoUserError(
            f"{path}: not a checkpoint: neither a PyTorch checkpoint (torch.save) nor a file encrypted with -k")
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        raise TaoUserError(
            f"{path}: refusing to load: it holds Python objects other than weights{_not_weights_reason(err)}. "
            "Only tensors and plain containers are loaded, never code: this file is not a usable checkpoint."
        ) from None
    except (RuntimeError, EOFError, ValueError, KeyError, OSError) as err:
        detail = "" if "weights_only" in str(err) else f" ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
        raise TaoUserError(f"{path}: not a checkpoint: the file is damaged or truncated{detail}") from None


def extract_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """The model weights of a checkpoint in any of the layouts above, with prefixes removed."""
    state = checkpoint
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise TaoUserError("checkpoint holds no state dict of tensors (expected 'state_dict', 'model' or tensors)")
    return {_strip_prefix(k): v for k, v in state.items()}


def _strip_prefix(name: str) -> str:
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


@dataclass
class LoadReport:
    loaded: list[str] = field(default_factory=list)
    skipped_shape: list[str] = field(default_factory=list)  # e.g. heads of another num_classes
    missing: list[str] = field(default_factory=list)  # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)  # in the checkpoint, not in the model


def load_model_weights(model: torch.nn.Module, source: Any, key: str | None = None) -> LoadReport:
    """Copy matching weights from a checkpoint (path or loaded object) into `model`.

    Tensors whose shape differs (a head trained for another number of classes) are skipped
    with a warning that lists them, so fine-tuning from a checkpoint of another dataset works.
    """
    checkpoint = load_checkpoint(source, key) if isinstance(source, (str, os.PathLike)) else source
    weights = extract_state_dict(checkpoint)
    own = model.state_dict()
    report = LoadReport()
    usable = {}
    for name, tensor in weights.items():
        if name not in own:
            report.unexpected.append(name)
        elif own[name].shape != tensor.shape:
            report.skipped_shape.append(f"{name} {tuple(tensor.shape)} -> {tuple(own[name].shape)}")
        else:
            usable[name] = tensor
            report.loaded.append(name)
    report.missing = [n for n in own if n not in usable]
    if not usable:
        raise TaoUserError(
            "no tensor of the checkpoint matches the model: is it a checkpoint of this network? "
            f"(first checkpoint keys: {list(weights)[:5]})"
        )
    model.load_state_dict(usable, strict=False)
    if report.skipped_shape:
        log.warning("skipped %d tensors whose shape differs: %s", len(report.skipped_shape), ", ".join(report.skipped_shape))
    if report.missing:
        log.warning("%d model tensors not in the checkpoint (kept as initialised): %s", len(report.missing),
                    ", ".join(report.missing[:20]) + (" ..." if len(report.missing) > 20 else ""))
    if report.unexpected:
        log.info("%d checkpoint tensors not used by the model: %s", len(report.unexpected),
                 ", ".join(report.unexpected[:20]))
    return report
