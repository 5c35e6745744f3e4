"""Check a user's spec values against a schema dataclass, field by field.

Runs on the plain YAML data before anything is merged or built, and collects every problem
(unknown key with a did-you-mean, wrong type, value not among the options, out of range) so the
user fixes them all in one go. Returns the values coerced to the declared types (e.g. YAML 1.1
reads `2e-5` as a string; a float field accepts it).
"""

import difflib
import math
from typing import Any

from tao_core.errors import SpecError
from tao_core.spec.schema_walk import FieldType, schema_fields

_INVALID = object()


def did_you_mean(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _join(path: str, key) -> str:
    return f"{path}.{key}" if path else str(key)


def validate_section(data: Any, cls: type, path: str, errors: list[SpecError]) -> dict:
    """Validate a mapping against dataclass `cls`; append problems to `errors`."""
    if not isinstance(data, dict):
        errors.append(SpecError(path or "<root>", data, "a mapping of the section's fields"))
        return {}
    fields = schema_fields(cls)
    out = {}
    for key, value in data.items():
        key_path = _join(path, key)
        if key not in fields:
            known = ", ".join(sorted(fields)) if len(fields) <= 12 else f"one of the {len(fields)} fields of this section"
            errors.append(
                SpecError(key_path, value, f"a known key{did_you_mean(key, fields)}; '{key}' is not a field here ({known})")
            )
            continue
        ftype, meta, _ = fields[key]
        coerced = _check_value(value, ftype, meta, key_path, errors)
        if coerced is not _INVALID:
            out[key] = coerced
    return out


def _check_value(value, ftype: FieldType, meta: dict, path: str, errors: list[SpecError]):
    if value is None:
        if ftype.optional or ftype.kind == "any":
            return None
        errors.append(SpecError(path, value, f"{ftype.describe()}; null is not allowed here"))
        return _INVALID
    coerced = _coerce(value, ftype)
    if coerced is _INVALID:
        errors.append(SpecError(path, value, ftype.describe()))
        return _INVALID
    value = coerced
    if ftype.kind == "dataclass":
        return validate_section(value, ftype.cls, path, errors)
    if ftype.kind == "list":
        if meta.get("options") is not None and value not in meta["options"]:
            errors.append(SpecError(path, value, f"one of {meta['options']}"))
            return _INVALID
        if meta.get("length") is not None and len(value) != meta["length"]:
            errors.append(SpecError(path, value, f"a list of exactly {meta['length']} elements"))
        items = []
        item_meta = {"options": meta.get("item_options"), "ge": meta.get("item_ge"), "gt": meta.get("item_gt")}
        for i, item in enumerate(value):
            checked = _check_value(item, ftype.item, item_meta, f"{path}[{i}]", errors)
            items.append(checked)
        return _INVALID if any(i is _INVALID for i in items) else items
    if ftype.kind == "dict":
        result = {}
        for k, v in value.items():
            checked = _check_value(v, ftype.item, {}, _join(path, k), errors)
            if checked is not _INVALID:
                result[str(k)] = checked
        return result
    return _check_scalar_rules(value, meta, path, errors)


def _coerce(value, ftype: FieldType):
    """Return value converted to the field's type, or _INVALID."""
    kind = ftype.kind
    if kind == "any":
        return value
    if kind == "bool":
        return value if isinstance(value, bool) else _INVALID
    if kind == "int":
        return value if isinstance(value, int) and not isinstance(value, bool) else _INVALID
    if kind == "float":
        if isinstance(value, bool):
            return _INVALID
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                number = float(value)
            except ValueError:
                return _INVALID
            return number if math.isfinite(number) else _INVALID
        return _INVALID
    if kind == "str":
        if isinstance(value, str):
            return value
        # Paths and names such as `2017` are read by YAML as numbers; keep them as text.
        return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else _INVALID
    if kind == "list":
        return list(value) if isinstance(value, (list, tuple)) else _INVALID
    if kind in ("dict", "dataclass"):
        return value if isinstance(value, dict) else _INVALID
    return _INVALID


def _check_scalar_rules(value, meta: dict, path: str, errors: list[SpecError]):
    options = meta.get("options")
    if options is not None and value not in options:
        hint = did_you_mean(value, options) if isinstance(value, str) else ""
        errors.append(SpecError(path, value, f"one of {options}{hint}"))
        return _INVALID
    bounds = [("ge", ">=", lambda v, b: v >= b), ("gt", ">", lambda v, b: v > b),
              ("le", "<=", lambda v, b: v <= b), ("lt", "<", lambda v, b: v < b)]
    for key, symbol, ok in bounds:
        bound = meta.get(key)
        if bound is not None and isinstance(value, (int, float)) and not ok(value, bound):
            errors.append(SpecError(path, value, f"a value {symbol} {bound}"))
            return _INVALID
    return value


def missing_required(values: Any, cls: type, path: str = "") -> list[SpecError]:
    """SpecErrors for `required=True` fields left null or empty in merged `values` (a mapping)."""
    errors = []
    for name, (ftype, meta, _) in schema_fields(cls).items():
        value = values.get(name) if values is not None else None
        key_path = _join(path, name)
        if meta.get("required") and value in (None, "", [], {}):
            errors.append(SpecError(key_path, value, f"a value: this field is required ({meta.get('description', '')})"))
        elif ftype.kind == "dataclass" and value is not None:
            errors.extend(missing_required(value, ftype.cls, key_path))
        elif ftype.kind == "list" and ftype.item.kind == "dataclass" and value:
            for i, item in enumerate(value):
                errors.extend(missing_required(item, ftype.item.cls, f"{key_path}[{i}]"))
    return errors
