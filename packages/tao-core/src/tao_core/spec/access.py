"""Reading one field of a loaded spec node, whatever carries it.

Task code receives OmegaConf nodes from the CLI, plain dicts from Python callers and tests, and
SimpleNamespace / dataclass objects from unit tests; `spec_get` reads a field from any of them
(the one such helper: use it rather than a local `_get`), `spec_get_default` with the schema's
default for a field the node leaves out.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any


def spec_get(node: Any, name: str, default: Any = None) -> Any:
    """`node[name]` of a mapping (dict, DictConfig), else attribute `name` of any other object
    (a list gives `default`); `default` when absent or when node is None."""
    if node is None:
        return default
    if isinstance(node, Mapping):  # dict, OmegaConf DictConfig (a ListConfig is no mapping: attribute -> default)
        return node.get(name, default)
    return getattr(node, name, default)


@functools.cache
def _defaults_of(schema: type) -> Any:
    return schema()


def spec_get_default(node: Any, name: str, schema: type) -> Any:
    """`spec_get(node, name)`, with the default that the spec dataclass `schema` declares for
    `name` when node leaves it out (a partial config from Python or a test): defaults are
    written once, in the schema, never copied into the code that reads them."""
    return spec_get(node, name, getattr(_defaults_of(schema), name))
