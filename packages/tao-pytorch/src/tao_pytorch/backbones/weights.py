"""Loading a backbone's weights from a local file (`model.pretrained_backbone_path`).

One loader for every backbone: it reads a raw state dict or one wrapped in {"state_dict": ...} /
{"model": ...}, strips the prefixes that DDP, Lightning, MMLab and detector checkpoints put in
front of the trunk's own names, drops the keys the backbone says a checkpoint may carry and a
trunk lacks (a classifier head), and tolerates the keys the backbone says a checkpoint may lack
(detection-only layers such as GCViT's output norms, which keep their initial values, as in TAO).
Anything else that does not fit raises ValueError naming the file and the offending keys, before
any weight is copied. Never unpickles arbitrary objects (weights_only=True).
"""

import logging
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

import torch
from torch import nn

log = logging.getLogger(__name__)

# Prefixes other tools put in front of a trunk's names (DDP, detector checkpoints, Lightning, MMLab).
STRIP_PREFIXES = (
    "module.",
    "model.model.backbone.0.body.",
    "model.backbone.0.body.",
    "backbone.0.body.",
    "backbone.",
    "body.",
)


class LoadReport(NamedTuple):
    """Keys the trunk kept at their initial values (missing) and file keys it dropped (unexpected)."""

    missing: List[str]
    unexpected: List[str]


def read_state_dict(path) -> dict:
    """The tensors of a local checkpoint file, unwrapped and with the STRIP_PREFIXES removed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained backbone file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a state dict (mapping of names to tensors), got {type(obj).__name__}")
    state = {}
    for k, v in obj.items():
        for p in STRIP_PREFIXES:
            if k.startswith(p):
                k = k[len(p) :]
                break
        state[k] = v
    return state


def _listed(label: str, keys: List[str], describe: Callable[[str], str] = str) -> str:
    shown = ", ".join(describe(k) for k in keys[:5])
    return f"{len(keys)} {label} ({shown}{', ...' if len(keys) > 5 else ''})"


def load_backbone_weights(
    body: nn.Module,
    path,
    *,
    layout: str,
    ignorable: Callable[[str], bool] = lambda k: False,
    may_be_missing: Callable[[str], bool] = lambda k: False,
    adapt: Optional[Callable[[dict], dict]] = None,
) -> LoadReport:
    """Copy the weights of `path` into `body` (all or nothing).

    layout: what key names are expected, for the error message ("torchvision ResNet", ...);
    ignorable(key): file keys dropped without complaint (a classifier head); may_be_missing(key):
    trunk keys a checkpoint may lack (they keep their initial values). Both are reported in the
    returned LoadReport and logged. adapt(state): a trunk's own fix-up of the file's tensors before
    they are checked (e.g. a ViT's position embeddings resized to its grid).
    """
    state = read_state_dict(path)
    if adapt is not None:
        state = adapt(state)
    own = body.state_dict()
    dropped = sorted(k for k in state if k not in own and ignorable(k))
    for k in dropped:
        del state[k]
    missing = sorted(set(own) - set(state))
    tolerated = [k for k in missing if may_be_missing(k)]
    missing = [k for k in missing if not may_be_missing(k)]
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        parts = [_listed("missing", missing)] if missing else []
        if unexpected:
            parts.append(_listed("unexpected", unexpected))
        if wrong_shape:
            parts.append(
                _listed("shape mismatch", wrong_shape, lambda k: f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}")
            )
        name = getattr(body, "name", type(body).__name__)
        raise ValueError(f"{path} does not fit backbone {name} ({layout} key names expected): " + "; ".join(parts))
    body.load_state_dict({**{k: own[k] for k in tolerated}, **state}, strict=True)
    if tolerated or dropped:
        log.info(
            "loaded %s: %d keys kept their initial values (%s); %d file keys not used (%s)",
            path, len(tolerated), ", ".join(tolerated[:8]), len(dropped), ", ".join(dropped[:8]),
        )
    return LoadReport(missing=tolerated, unexpected=dropped)
