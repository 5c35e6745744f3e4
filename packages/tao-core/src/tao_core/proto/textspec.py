"""Protobuf-text (prototxt) spec helpers shared by the TF1-era networks.

Reading turns every failure into a `SpecError` a user can act on: the dotted field path, the
offending token, what is allowed, and the line and column (also kept as `err.line` /
`err.column`). Overrides (`a.b.c=value`) set scalar fields by path; map entries are addressed by
key (`target_class_config.car.dbscan_eps=0.2`) and repeated messages by index
(`target_classes.0.class_weight=2`). `json_schema` derives a JSON Schema from a descriptor.
"""

from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import Sequence

from google.protobuf import descriptor_pool, text_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from tao_core.errors import SpecError

_UNKNOWN_FIELD = re.compile(r'Message type "([\w.]+)" has no field named "(\w+)"')
_UNKNOWN_ENUM = re.compile(r'Enum type "([\w.]+)" has no value named (\w+)')
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|\'(?:[^\'\\\n]|\\.)*\'|#[^\n]*|[A-Za-z_][\w.]*|[{}<>:]|[^\s{}<>:]+')
_NAMED_FIELD = re.compile(r'^Field "(\w+)" is specified along|should not have multiple "(\w+)" fields')
_LOCATION = re.compile(r"^\d+(?::\d+)? : ")
# Two artifacts of spec examples printed in documentation, neither valid protobuf text:
# a line of dots standing for omitted entries, and a bare `<placeholder>` where a string goes.
_ELISION = re.compile(r"^\s*\.{2,}\s*$")
_PLACEHOLDER = re.compile(r"^(\s*\w+\s*:\s*)(<[\w\-./]+>)(\s*(?:#.*)?)$")

log = logging.getLogger(__name__)


def read_text(path: str | Path) -> str:
    """The spec file's text; a missing or unreadable file is a SpecError."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError("spec_file", str(path), "an existing protobuf-text spec file", source=str(path)) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError("spec_file", str(path), f"a readable UTF-8 text file ({e})", source=str(path)) from None


def tolerate_documentation_artifacts(text: str, source: str | None = None) -> str:
    """Make a spec copied from the documentation parse, warning about each change.

    `..` lines (elided entries) are dropped; `field: <placeholder>` becomes the string
    "<placeholder>" (a one-token `<...>` can never be a message literal), so the validation
    that follows names the field whose value still has to be filled in.
    """
    lines = text.split("\n")
    for number, line in enumerate(lines, 1):
        where = f"{source or '<spec>'}:{number}"
        if _ELISION.match(line):
            log.warning("%s: '%s' (an elision in the documentation) ignored", where, line.strip())
            lines[number - 1] = ""
        elif m := _PLACEHOLDER.match(line):
            log.warning("%s: placeholder %s read as a string; replace it with a real value", where, m.group(2))
            lines[number - 1] = f'{m.group(1)}"{m.group(2)}"{m.group(3)}'
    return "\n".join(lines)


def parse(text: str, message_cls: type[Message], source: str | None = None) -> Message:
    """Parse protobuf text into a new `message_cls`; a ParseError becomes a SpecError."""
    msg = message_cls()
    text = tolerate_documentation_artifacts(text, source)
    try:
        text_format.Parse(text, msg)
    except text_format.ParseError as e:
        raise _spec_error(e, text, msg.DESCRIPTOR, source) from None
    return msg


def _spec_error(err: text_format.ParseError, text: str, root: Descriptor, source: str | None) -> SpecError:
    line, col = err.GetLine() or 1, err.GetColumn() or 1
    lines = text.splitlines() or [""]
    detail = _LOCATION.sub("", str(err))
    line_text = lines[line - 1] if 0 < line <= len(lines) else ""
    for quoted in (f"'{line_text}': ", f"{line_text!r}: "):  # the parser may echo the line
        if detail.startswith(quoted):
            detail = detail[len(quoted) :]
    stack, field = _context(text, line, col)

    if m := _UNKNOWN_FIELD.search(detail):
        type_name, name = m.groups()
        names = [f.name for f in _descriptor(type_name).fields] if _descriptor(type_name) else []
        expected = f"a field of {type_name.rsplit('.', 1)[-1]}{_did_you_mean(name, names)}"
        path, value = ".".join(stack + [name]), name
    elif m := _UNKNOWN_ENUM.search(detail):
        enum = descriptor_pool.Default().FindEnumTypeByName(m.group(1))
        value = m.group(2)
        names = [v.name for v in enum.values]
        expected = f"one of {', '.join(names)}{_did_you_mean(value, names)}"
        path = ".".join(stack + [field] if field else stack)
    else:
        value = _token_at(line_text, col)
        detail = detail[:-1] if detail.endswith(".") and not detail.endswith("..") else detail
        # Oneof clashes and repeated singular fields name the field the scan has not reached.
        if named := _NAMED_FIELD.search(detail):
            field = named.group(1) or named.group(2)
        fd = _field_at(root, stack + [field]) if field else None
        kind = _KINDS.get(fd.type) if fd is not None and fd.type != FieldDescriptor.TYPE_MESSAGE else None
        expected = f"{kind} ({detail})" if kind else f"valid protobuf text ({detail})"
        path = ".".join(stack + [field] if field else stack) or "<top level>"
    error = SpecError(path, value, f"{expected} [line {line}, column {col}]", source=source)
    error.line, error.column = line, col
    return error


def _field_at(root: Descriptor, names: list[str]) -> FieldDescriptor | None:
    """The field a block path names (map keys in the path are skipped), or None."""
    desc, fd, skip = root, None, False
    for name in names:
        if skip:
            skip = False
            continue
        if desc is None or name not in desc.fields_by_name:
            return None
        fd = desc.fields_by_name[name]
        if _is_map(fd):
            desc, skip = fd.message_type.fields_by_name["value"].message_type, True
        else:
            desc = fd.message_type
    return fd


def _descriptor(full_name: str) -> Descriptor | None:
    try:
        return descriptor_pool.Default().FindMessageTypeByName(full_name)
    except KeyError:
        return None


def _did_you_mean(name: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" ({', '.join(choices)})" if len(choices) <= 12 else ""


def _context(text: str, line: int, col: int) -> tuple[list[str], str | None]:
    """Enclosing block names and the last field name before (line, col), by a light scan.

    Map entries (`name { key: "car" value { ... } }`) show as `name.car`, matching overrides.
    """
    lines = text.splitlines(keepends=True)
    end = sum(len(x) for x in lines[: line - 1]) + col - 1
    frames: list[dict] = []  # {"name": block name, "key": map key seen in it}
    tokens = [t for t in _TOKEN.findall(text[:end]) if not t.startswith("#")]
    field = None
    for i, tok in enumerate(tokens):
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok in "{<" and field is not None:
            name = field
            if name == "value" and frames and frames[-1]["key"] is not None:
                name = frames[-1]["key"]
            frames.append({"name": name, "key": None})
            field = None
        elif tok in "}>":
            if frames:
                frames.pop()
            field = None
        elif re.match(r"[A-Za-z_]", tok) and nxt in (":", "{", "<", None):
            field = tok
        elif tok[0] in "\"'" and field == "key" and frames:
            frames[-1]["key"] = tok[1:-1]
    return [f["name"] for f in frames], field


def _token_at(line_text: str, col: int) -> str:
    m = _TOKEN.match(line_text, max(col - 1, 0))
    return m.group(0) if m else ""


# ---------------------------------------------------------------------------------------------
# Overrides


def apply_overrides(msg: Message, overrides: Sequence[str], source: str | None = None) -> None:
    """Apply `dotted.path=value` assignments to scalar fields of `msg`, in order."""
    for item in overrides:
        path, sep, raw = item.partition("=")
        path = path.strip()
        if not sep or not path:
            raise SpecError(item, item, "an override of the form dotted.field.path=value", source=source)
        _apply_one(msg, path, raw.strip(), source)


def _apply_one(root: Message, path: str, raw: str, source: str | None) -> None:
    _assign(root, path.split("."), path, raw, source)


def _assign(msg: Message, parts: list[str], path: str, raw: str, source: str | None) -> None:
    """Walk `parts` from `msg` and set the scalar at the end; SpecError on any bad step."""
    if not parts or not parts[0]:
        raise SpecError(path, raw, "a path ending at a scalar field (messages cannot be assigned)", source)
    part, rest = parts[0], parts[1:]
    fields = msg.DESCRIPTOR.fields_by_name
    if part not in fields:
        hint = _did_you_mean(part, list(fields))
        raise SpecError(
            path, raw, f"a known field path; {part!r} is not a field of {msg.DESCRIPTOR.name}{hint}", source
        )
    fd = fields[part]
    if _is_map(fd):
        if not rest:
            raise SpecError(path, raw, f"a map key after {part!r} ({part}.<key>...)", source)
        key, rest = rest[0], rest[1:]
        value_fd = fd.message_type.fields_by_name["value"]
        if value_fd.type == FieldDescriptor.TYPE_MESSAGE:
            return _assign(getattr(msg, part)[key], rest, path, raw, source)
        if rest:
            raise SpecError(path, raw, f"{part}.<key>=value ({part} maps to scalars)", source)
        getattr(msg, part)[key] = _convert(value_fd, raw, path, source)
    elif _is_repeated(fd):
        items = getattr(msg, part)
        if fd.type != FieldDescriptor.TYPE_MESSAGE:
            raise SpecError(path, raw, f"a scalar field ({part!r} is a list; set it in the spec file)", source)
        if not rest or not rest[0].isdigit() or int(rest[0]) >= len(items):
            raise SpecError(path, raw, f"{part}.<index>... with index < {len(items)}", source)
        _assign(items[int(rest[0])], rest[1:], path, raw, source)
    elif fd.type == FieldDescriptor.TYPE_MESSAGE:
        _assign(getattr(msg, part), rest, path, raw, source)
    elif rest:
        raise SpecError(path, raw, f"a path ending at the scalar field {part!r}", source)
    else:
        setattr(msg, part, _convert(fd, raw, path, source))


def _is_map(fd: FieldDescriptor) -> bool:
    return fd.message_type is not None and fd.message_type.GetOptions().map_entry


def _is_repeated(fd: FieldDescriptor) -> bool:
    return fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == FieldDescriptor.LABEL_REPEATED


_INT_TYPES = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}
_UNSIGNED = {
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
}


_KINDS = {
    **{t: "an integer" for t in _INT_TYPES},
    **{t: "an unsigned integer" for t in _UNSIGNED},
    FieldDescriptor.TYPE_FLOAT: "a number",
    FieldDescriptor.TYPE_DOUBLE: "a number",
    FieldDescriptor.TYPE_BOOL: "true or false",
    FieldDescriptor.TYPE_STRING: 'a quoted string ("...")',
    FieldDescriptor.TYPE_BYTES: 'a quoted string ("...")',
    FieldDescriptor.TYPE_ENUM: "an enum value name",
}


def _convert(fd: FieldDescriptor, raw: str, path: str, source: str | None):
    """Text -> Python value of the field's type, with a SpecError naming the type on failure."""
    t = fd.type
    try:
        if t in _INT_TYPES:
            value = int(raw, 0)
            if t in _UNSIGNED and value < 0:
                raise ValueError
            return value
        if t in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
            return float(raw)
        if t == FieldDescriptor.TYPE_BOOL:
            lowered = raw.lower()
            if lowered in ("true", "t", "1"):
                return True
            if lowered in ("false", "f", "0"):
                return False
            raise ValueError
        if t == FieldDescriptor.TYPE_ENUM:
            names = [v.name for v in fd.enum_type.values]
            if raw in names:
                return fd.enum_type.values_by_name[raw].number
            raise SpecError(path, raw, f"one of {', '.join(names)}{_did_you_mean(raw, names)}", source)
        if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
            raw = raw[1:-1]
        return raw.encode() if t == FieldDescriptor.TYPE_BYTES else raw
    except ValueError:
        raise SpecError(path, raw, _KINDS[t], source) from None


# ---------------------------------------------------------------------------------------------
# JSON Schema

_JSON_TYPES = {
    FieldDescriptor.TYPE_FLOAT: "number",
    FieldDescriptor.TYPE_DOUBLE: "number",
    FieldDescriptor.TYPE_BOOL: "boolean",
    FieldDescriptor.TYPE_STRING: "string",
    FieldDescriptor.TYPE_BYTES: "string",
}


def json_schema(descriptor: Descriptor, defaults: dict[str, object] | None = None) -> dict:
    """JSON Schema (draft 2020-12) of a message: scalars, enums by name, repeated -> array,
    maps -> object with additionalProperties, oneof members mutually exclusive.

    `defaults` maps dotted field paths to documented defaults (proto3 itself stores none).
    """
    schema = _message_schema(descriptor, "", defaults or {})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = descriptor.full_name
    return schema


def _message_schema(desc: Descriptor, prefix: str, defaults: dict) -> dict:
    props = {}
    for fd in desc.fields:
        path = f"{prefix}{fd.name}"
        if _is_map(fd):
            value_fd = fd.message_type.fields_by_name["value"]
            sub = {"type": "object", "additionalProperties": _value_schema(value_fd, path + ".*", defaults)}
        elif _is_repeated(fd):
            sub = {"type": "array", "items": _value_schema(fd, path, defaults)}
        else:
            sub = _value_schema(fd, path, defaults)
            if path in defaults:
                sub["default"] = defaults[path]
        props[fd.name] = sub
    schema: dict = {"type": "object", "properties": props, "additionalProperties": False}
    exclusive = [
        {"not": {"required": [a.name, b.name]}}
        for oneof in desc.oneofs
        if not getattr(oneof, "is_synthetic", False)  # proto3 `optional` makes synthetic oneofs
        for i, a in enumerate(oneof.fields)
        for b in oneof.fields[i + 1 :]
    ]
    if exclusive:
        schema["allOf"] = exclusive
    return schema


def _value_schema(fd: FieldDescriptor, path: str, defaults: dict) -> dict:
    if fd.type == FieldDescriptor.TYPE_MESSAGE:
        return _message_schema(fd.message_type, path + ".", defaults)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        return {"type": "string", "enum": [v.name for v in fd.enum_type.values]}
    if fd.type in _INT_TYPES:
        return {"type": "integer", "minimum": 0} if fd.type in _UNSIGNED else {"type": "integer"}
    return {"type": _JSON_TYPES[fd.type]}
