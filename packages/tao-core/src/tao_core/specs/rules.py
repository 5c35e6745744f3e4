"""Generic cross-field rule helpers shared by the YAML networks (DINO, Deformable DETR, OneFormer).

Every helper returns a list of SpecError (empty when fine) so a network's `check_rules` can
collect all problems in one pass. A few helpers also *normalise* the merged config: the engine
calls the rules while the config is still writable and freezes it afterwards, so a value that
the documentation says is "modified" (num_gpus vs gpu_ids) or a documented alias is settled
here once, and every consumer reads a single consistent value.
"""

import logging
from typing import Any, Iterable, Optional, Sequence

from tao_core.errors import SpecError

log = logging.getLogger(__name__)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def plain(value: Any) -> Any:
    """A DictConfig/ListConfig as plain Python (so error messages show [0, 1], not ListConfig)."""
    try:
        from omegaconf import OmegaConf

        if OmegaConf.is_config(value):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a hard dependency
        pass
    return value


def is_set(value: Any) -> bool:
    """True unless the value is null or an empty string / list / mapping."""
    if value is None:
        return False
    return len(value) > 0 if hasattr(value, "__len__") else True


def require(value: Any, path: str, why: str) -> list:
    """The field must be set; `why` names what needs it and how to set it."""
    return [] if is_set(value) else [SpecError(path, plain(value), why)]


def check_gpus(section: Any, path: str) -> list:
    """Reconcile `num_gpus` with `gpu_ids` in a train/evaluate/inference section.

    TAO's rule: when both are given but disagree (num_gpus 1, gpu_ids [0, 1]) they are changed to
    follow the one that implies more GPUs (num_gpus becomes 2). When num_gpus is the larger, the
    user's gpu_ids are kept, in order, and completed with the lowest unused indices (num_gpus 3,
    gpu_ids [2] -> [2, 0, 1]). Duplicated ids can't be reconciled and are an error.
    """
    ids = [int(i) for i in (section.gpu_ids or [])]
    if len(set(ids)) != len(ids):
        return [SpecError(_join(path, "gpu_ids"), ids, "distinct GPU indices (each GPU listed once)")]
    num = int(section.num_gpus)
    if num == len(ids):
        return []
    if len(ids) > num:
        new_num, new_ids = len(ids), ids
    else:
        spare = (i for i in range(num + len(ids) + 1) if i not in ids)
        new_num, new_ids = num, ids + [next(spare) for _ in range(num - len(ids))]
    log.warning(
        "%s: num_gpus=%d and gpu_ids=%s disagree; using the setting that implies more GPUs: "
        "num_gpus=%d, gpu_ids=%s",
        path, num, ids, new_num, new_ids,
    )
    section.num_gpus = new_num
    section.gpu_ids = new_ids
    return []


def check_divisible(value: Optional[int], divisor: int, path: str, why: str = "") -> list:
    """`value` (when set) must be a multiple of `divisor`."""
    if value is None or value % divisor == 0:
        return []
    lower, upper = value - value % divisor, value - value % divisor + divisor
    hint = f" (e.g. {lower} or {upper})" if lower > 0 else f" (e.g. {upper})"
    return [SpecError(path, value, f"a multiple of {divisor}{hint}{'; ' + why if why else ''}")]


def check_ordered(low: Any, high: Any, low_path: str, high_path: str) -> list:
    """`low <= high` for a (min, max) pair of fields; the error is reported on the min field."""
    if low is None or high is None or low <= high:
        return []
    return [SpecError(low_path, low, f"a value <= {high_path} ({high})")]


def check_one_of(value: Any, allowed: Sequence[Any], path: str) -> list:
    """`value` must equal one of `allowed`; for list-valued fields (the engine checks `options`
    on scalars only)."""
    given = plain(value)
    if given in [list(a) if isinstance(a, (list, tuple)) else a for a in allowed]:
        return []
    return [SpecError(path, given, f"one of {[list(a) if isinstance(a, tuple) else a for a in allowed]}")]


def check_length_in(value: Any, lengths: Iterable[int], path: str) -> list:
    """A list whose length must be one of `lengths` (e.g. per-channel mean: 1 or 3 values)."""
    lengths = list(lengths)
    if value is None or len(value) in lengths:
        return []
    words = " or ".join(str(n) for n in lengths)
    return [SpecError(path, plain(value), f"a list of {words} values")]


def reconcile_alias(section: Any, path: str, name: str, alias: str, default: Any) -> list:
    """Settle a field that the documentation spells two ways (`name` and its `alias`).

    Both fields exist in the schema with the same default. If the user set only one of them
    (the other still at the default), the other is set to match, so consumers may read either.
    Setting both to different values is an error.
    """
    value, other = section[name], section[alias]
    if plain(value) == plain(other):
        return []
    if plain(other) == default:
        section[alias] = value
        return []
    if plain(value) == default:
        section[name] = other
        return []
    return [
        SpecError(
            _join(path, alias),
            plain(other),
            f"the same value as {_join(path, name)} ({plain(value)!r}): both name one setting; set only one",
        )
    ]


def check_num_classes_covers(num_classes: int, category_ids: Iterable[int], path: str = "dataset.num_classes") -> list:
    """Data-time check (not run at spec load): num_classes must exceed every COCO category_id.

    Class logits are indexed by category_id directly, so a too small num_classes shows up only
    as a CUDA 'device-side assert' in the loss; callers that have read the annotations run this
    first to turn it into a clear message.
    """
    ids = list(category_ids)
    if not ids or max(ids) < num_classes:
        return []
    return [
        SpecError(
            path,
            num_classes,
            f"at least max(category_id) + 1 = {max(ids) + 1} (the annotations use category_id {max(ids)})",
        )
    ]
