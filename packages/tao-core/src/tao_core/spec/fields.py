"""Field declarations for spec schemas.

A schema is a plain dataclass whose fields are declared with `spec_field(...)`. The metadata
(description, allowed options, numeric bounds) drives validation, the JSON Schema and the
template, so a rule is written once, next to its default.

    @dataclass
    class ModelConfig:
        backbone: str = spec_field("resnet_50", "Backbone name.", options=BACKBONES)
        num_queries: int = spec_field(900, "Number of queries.", gt=0)
        return_interm_indices: List[int] = spec_field([1, 2, 3, 4], "...", item_options=[0, 1, 2, 3, 4])
        pretrained_backbone_path: Optional[str] = spec_field(None, "Local path to weights.")
        optim: OptimConfig = spec_field(OptimConfig, "Optimizer.")   # nested: pass the class

Types come from the annotation: bool, int, float, str, Optional[X], List[X], Dict[str, X] and
nested dataclasses (List[Dataclass] too). Mutable defaults (lists, dicts, dataclasses) are
copied per instance.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, Sequence

_MISSING = dataclasses.MISSING


def spec_field(
    default: Any,
    description: str = "",
    *,
    options: Sequence[Any] | None = None,
    item_options: Sequence[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    item_ge: float | None = None,
    item_gt: float | None = None,
    length: int | None = None,
    required: bool = False,
) -> Any:
    """Declare a spec field with its default (the seed's Default column) and its rules.

    options:       the value must be one of these (case-sensitive, as in the seeds).
    item_options:  every list element must be one of these.
    ge/gt/le/lt:   numeric bounds on the value; item_ge/item_gt on every list element.
    length:        a list must have exactly this many elements.
    required:      the user must set it (for the tasks that read it; see `requires` in schemas).
    """
    meta = {
        "description": description,
        "options": list(options) if options is not None else None,
        "item_options": list(item_options) if item_options is not None else None,
        "ge": ge,
        "gt": gt,
        "le": le,
        "lt": lt,
        "item_ge": item_ge,
        "item_gt": item_gt,
        "length": length,
        "required": required,
    }
    if isinstance(default, type) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=lambda d=default: copy.deepcopy(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)
