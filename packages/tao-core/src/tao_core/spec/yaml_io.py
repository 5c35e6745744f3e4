"""Reading YAML spec files and dotted command-line overrides into plain data."""

import logging
import os
from typing import Any, Sequence

import yaml

from tao_core.errors import SpecError, TaoUserError

log = logging.getLogger(__name__)


class _SpecLoader(yaml.SafeLoader):
    """SafeLoader that keeps the last of duplicated keys and warns about them.

    TAO's documentation itself prints specs with a repeated key (`num_queries: 300` then
    `num_queries: 900`); YAML forbids that, but rejecting a documented example helps nobody.
    """


def _construct_mapping(loader: _SpecLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    result: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in result:
            mark = key_node.start_mark
            log.warning(
                "%s line %d: key '%s' appears twice; the later value wins", mark.name, mark.line + 1, key
            )
        result[key] = loader.construct_object(value_node, deep=deep)
    return result


_SpecLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def parse_yaml_text(text: str, source: str = "<spec>") -> dict:
    """Parse YAML text into a dict; a syntax error names the file, line and column."""
    loader = _SpecLoader(text)
    loader.name = source  # so marks (duplicate-key warnings, syntax errors) name the file
    try:
        data = loader.get_single_data()
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise TaoUserError(f"{source}: invalid YAML at {where}: {err.problem}") from None
    except yaml.YAMLError as err:
        raise TaoUserError(f"{source}: invalid YAML: {err}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpecError("<root>", data, "a YAML mapping of sections (model:, dataset:, train: ...)", source)
    return data


def read_yaml_file(path: str | os.PathLike) -> dict:
    if not os.path.isfile(path):
        raise TaoUserError(f"spec file not found: {path}")
    with open(path, encoding="utf-8") as f:
        return parse_yaml_text(f.read(), str(path))


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """Apply `a.b.c=value` overrides (value parsed as YAML) onto nested dict `data` in place."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise TaoUserError(f"override '{item}': expected key=value with a dotted key, e.g. train.num_epochs=5")
        try:
            value: Any = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw  # not YAML: keep the text as typed
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise SpecError(key, item, f"'{part}' to be a section, but the spec sets it to {child!r}")
            node = child
        node[parts[-1]] = value
    return data
