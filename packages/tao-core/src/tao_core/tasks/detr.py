"""Task-section rules of DINO / Deformable DETR evaluate and inference, shared by the PyTorch
(checkpoint) and deploy (engine) tasks: which data is evaluated, where outputs go, batch size
and the fixed input size.
"""

from __future__ import annotations

import os
from typing import Any

from tao_core.errors import SpecError, TaoUserError
from tao_core.spec.access import spec_get


def eval_sources(dataset_cfg: Any) -> tuple[str, Any]:
    """(spec field, sources) to evaluate on: dataset.test_data_sources when it names a json_file,
    else dataset.val_data_sources; neither is a TaoUserError."""
    test = spec_get(dataset_cfg, "test_data_sources")
    if test is not None and spec_get(test, "json_file"):
        return "dataset.test_data_sources", test
    val = spec_get(dataset_cfg, "val_data_sources")
    if val:
        return "dataset.val_data_sources", val
    raise TaoUserError("dataset.test_data_sources: give {image_dir, json_file} of the data to evaluate on")


def output_dir(section: Any, ctx: Any) -> str:
    """`<task>.results_dir` when the spec sets it, else <results_dir>/<task> (ctx.results_dir);
    created if missing."""
    out = str(spec_get(section, "results_dir") or ctx.results_dir)
    if os.path.exists(out) and not os.path.isdir(out):
        raise TaoUserError(f"{getattr(ctx, 'task', 'task')}.results_dir: {out} is a file, expected a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as err:
        raise TaoUserError(f"results_dir: cannot create {out}: {err.strerror or err}") from None
    return out


def batch_size_of(section: Any, cfg: Any) -> int:
    """`<task>.batch_size`, or dataset.batch_size when it is -1 (or unset)."""
    bs = int(spec_get(section, "batch_size", -1) or -1)
    return bs if bs > 0 else int(cfg.dataset.batch_size)


def input_size_of(section: Any, task: str) -> tuple[int, int] | None:
    """(h, w) from `<task>.input_height/input_width`, or None (aspect-preserving resize of the
    checkpoint task; the engine's own size on deploy). One without the other is a SpecError."""
    h, w = spec_get(section, "input_height"), spec_get(section, "input_width")
    if (h is None) != (w is None):
        missing = "input_width" if w is None else "input_height"
        raise SpecError(f"{task}.{missing}", None, "a value: input_height and input_width are given together")
    return None if h is None else (int(h), int(w))
