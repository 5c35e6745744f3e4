"""Reading one field of a loaded spec node, whatever carries it.

Task code receives OmegaConf nodes from the CLI, plain dicts from Python callers and tests, and
SimpleNamespace / dataclass objects from unit tests; `spec_get` reads a field from any of them.
"""

from __future__ import annotations

from typing import Any


def spec_get(node: Any, name: str, default: Any = None) -> Any:
    """`node[name]` of a mapping (dict, DictConfig), else attribute `name`; `default` when absent
    or when node is None."""
    if node is None:
        return default
    if hasattr(node, "get"):
        return node.get(name, default)
    return getattr(node, name, default)
