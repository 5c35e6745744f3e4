"""Type information of spec dataclasses, read once from their annotations.

Both the validator and the JSON Schema writer need to know, for a field annotation, whether
it is a scalar, an Optional, a List or a nested dataclass; that knowledge lives here.
"""

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldType:
    """A field annotation reduced to what validation needs."""

    kind: str  # "bool" | "int" | "float" | "str" | "any" | "list" | "dict" | "dataclass"
    optional: bool = False
    item: "FieldType | None" = None  # element type of a list / value type of a dict
    cls: type | None = None  # the dataclass, for kind == "dataclass"

    def describe(self) -> str:
        if self.kind == "list":
            text = f"a list of {self.item.describe()}"
        elif self.kind == "dict":
            text = f"a mapping of str to {self.item.describe()}"
        elif self.kind == "dataclass":
            text = "a mapping (section)"
        else:
            text = {"bool": "a boolean", "int": "an integer", "float": "a number", "str": "a string"}.get(
                self.kind, "any value"
            )
        return text + (" or null" if self.optional else "")


_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}


def field_type(annotation: Any) -> FieldType:
    """Reduce a typing annotation (List[int], Optional[str], a dataclass ...) to a FieldType."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union or (origin is not None and str(origin) == "<class 'types.UnionType'>"):
        rest = [a for a in args if a is not type(None)]
        inner = field_type(rest[0]) if len(rest) == 1 else FieldType("any")
        return dataclasses.replace(inner, optional=True)
    if origin in (list, typing.List):
        return FieldType("list", item=field_type(args[0]) if args else FieldType("any"))
    if origin in (dict, typing.Dict):
        return FieldType("dict", item=field_type(args[1]) if len(args) == 2 else FieldType("any"))
    if annotation in _SCALARS:
        return FieldType(_SCALARS[annotation])
    if dataclasses.is_dataclass(annotation):
        return FieldType("dataclass", cls=annotation)
    return FieldType("any")


@functools.cache
def schema_fields(cls: type) -> dict[str, tuple[FieldType, dict, dataclasses.Field]]:
    """name -> (FieldType, spec metadata, dataclasses.Field) for a spec dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (field_type(hints[f.name]), dict(f.metadata), f) for f in dataclasses.fields(cls)}


def default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None
