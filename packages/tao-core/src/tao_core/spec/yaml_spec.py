"""The spec engine of the YAML networks (DINO, Deformable DETR, OneFormer).

    YAML file -> dotted overrides -> per-field validation against the schema dataclass
    -> OmegaConf merge onto the schema's defaults -> cross-field rules -> read-only config

Everything here runs before any data is read or any weight is built, so a bad spec costs the
user a second, not a training start-up.
"""

import json
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import yaml
from omegaconf import DictConfig, OmegaConf

from tao_core.errors import SpecError, SpecErrors, TaoUserError
from tao_core.io.atomic import atomic_write_text
from tao_core.spec.schema_walk import FieldType, default_of, schema_fields
from tao_core.spec.validate import did_you_mean, missing_required, validate_section
from tao_core.spec.yaml_io import apply_overrides, parse_yaml_text, read_yaml_file

Rules = Callable[[DictConfig, str], list]


@dataclass
class YamlSpec:
    """The spec of one network: which schema each task reads, and its cross-field rules."""

    network: str
    tasks: dict
    rules: Rules | None = None

    def schema(self, task: str) -> type:
        if task not in self.tasks:
            raise TaoUserError(
                f"{self.network} has no task '{task}'{did_you_mean(task, self.tasks)}; "
                f"tasks: {', '.join(self.tasks)}"
            )
        return self.tasks[task]

    def defaults(self, task: str) -> DictConfig:
        return OmegaConf.structured(self.schema(task))

    def load(
        self,
        task: str,
        path: str | os.PathLike | None = None,
        overrides: Sequence[str] = (),
        text: str | None = None,
    ) -> DictConfig:
        """Read, override, validate and merge a spec; raises SpecErrors listing every problem."""
        cls = self.schema(task)
        source = str(path) if path is not None else "<spec>"
        if text is not None:
            data = parse_yaml_text(text, source)
        elif path is not None:
            data = read_yaml_file(path)
        else:
            data = {}
        apply_overrides(data, overrides)
        errors: list[SpecError] = []
        clean = validate_section(data, cls, "", errors)
        if errors:
            raise SpecErrors(_with_source(errors, source))
        cfg = OmegaConf.merge(OmegaConf.structured(cls), clean)
        errors = missing_required(cfg, cls)
        errors += list(self.rules(cfg, task)) if self.rules else []
        if errors:
            raise SpecErrors(_with_source(errors, source))
        OmegaConf.set_readonly(cfg, True)
        return cfg

    def template(self, task: str) -> str:
        """A complete spec with every default, each field commented with its description."""
        return "\n".join(_template_lines(self.schema(task), 0)) + "\n"

    def json_schema(self, task: str) -> dict:
        cls = self.schema(task)
        schema = _object_schema(cls)
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["title"] = f"{self.network} {task} spec"
        return schema


def _with_source(errors: list[SpecError], source: str) -> list[SpecError]:
    return [SpecError(e.path, e.value, e.expected, source) if e.source is None else e for e in errors]


def save_experiment(cfg: DictConfig, results_dir: str | os.PathLike, task: str) -> str:
    """Write the merged spec to <results_dir>/<task>/experiment.yaml (atomically)."""
    path = os.path.join(results_dir, task, "experiment.yaml")
    atomic_write_text(path, OmegaConf.to_yaml(cfg))
    return path


# ----------------------------------------------------------------------------- template


def _yaml_scalar(value) -> str:
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def _comment(meta: dict) -> str:
    parts = [(meta.get("description") or "").rstrip(".")]
    if meta.get("options") is not None:
        parts.append(f"options: {meta['options']}")
    if meta.get("item_options") is not None:
        parts.append(f"items from: {meta['item_options']}")
    bounds = [f"{sym} {meta[k]}" for k, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")) if meta.get(k) is not None]
    if bounds:
        parts.append(" and ".join(bounds))
    text = "; ".join(p for p in parts if p)
    return f"  # {text}" if text else ""


def _template_lines(cls: type, indent: int) -> list[str]:
    pad = "  " * indent
    lines = []
    for name, (ftype, meta, field) in schema_fields(cls).items():
        if ftype.kind == "dataclass" and default_of(field) is not None:
            lines.append(f"{pad}{name}:{_comment(meta)}")
            lines.extend(_template_lines(ftype.cls, indent + 1))
            continue
        value = default_of(field)
        if ftype.kind == "list" and ftype.item.kind == "dataclass":
            value = [OmegaConf.to_container(OmegaConf.structured(v)) for v in value]
        lines.append(f"{pad}{name}: {_yaml_scalar(value)}{_comment(meta)}")
    return lines


# ----------------------------------------------------------------------------- JSON Schema

_JSON_TYPES = {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}


def _type_schema(ftype: FieldType, meta: dict) -> dict:
    if ftype.kind == "dataclass":
        out = _object_schema(ftype.cls)
    elif ftype.kind == "list":
        item_meta = {"options": meta.get("item_options"), "ge": meta.get("item_ge"), "gt": meta.get("item_gt")}
        out = {"type": "array", "items": _type_schema(ftype.item, item_meta)}
        if meta.get("length") is not None:
            out["minItems"] = out["maxItems"] = meta["length"]
    elif ftype.kind == "dict":
        out = {"type": "object", "additionalProperties": _type_schema(ftype.item, {})}
    elif ftype.kind in _JSON_TYPES:
        out = {"type": _JSON_TYPES[ftype.kind]}
    else:
        out = {}
    if meta.get("options") is not None:
        out["enum"] = list(meta["options"])
    for key, word in (("ge", "minimum"), ("gt", "exclusiveMinimum"), ("le", "maximum"), ("lt", "exclusiveMaximum")):
        if meta.get(key) is not None:
            out[word] = meta[key]
    if ftype.optional and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def _object_schema(cls: type) -> dict:
    props = {}
    for name, (ftype, meta, field) in schema_fields(cls).items():
        prop = _type_schema(ftype, meta)
        if meta.get("description"):
            prop["description"] = meta["description"]
        if ftype.kind != "dataclass":
            default = default_of(field)
            if ftype.kind == "list" and ftype.item.kind == "dataclass":
                default = [OmegaConf.to_container(OmegaConf.structured(v)) for v in default]
            prop["default"] = json.loads(json.dumps(default))
        props[name] = prop
    return {"type": "object", "properties": props, "additionalProperties": False}
