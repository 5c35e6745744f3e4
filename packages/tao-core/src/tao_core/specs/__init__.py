"""Spec schemas of the networks, looked up by network name.

Each network module exposes `SPEC` (a YamlSpec, or the protobuf-spec equivalent for
detectnet_v2). Modules are imported only when asked for, so `tao --help` or one network's CLI
does not pay for parsing every schema.
"""

import importlib

from tao_core.errors import TaoUserError

_MODULES = {
    "dino": "tao_core.specs.dino",
    "deformable_detr": "tao_core.specs.deformable_detr",
    "oneformer": "tao_core.specs.oneformer",
    "detectnet_v2": "tao_core.specs.detectnet_v2",
}

NETWORKS = tuple(_MODULES)


def get_spec(network: str):
    """The spec object (`SPEC`) of `network`; unknown names get a did-you-mean."""
    if network not in _MODULES:
        from tao_core.spec.validate import did_you_mean

        raise TaoUserError(
            f"unknown network '{network}'{did_you_mean(network, NETWORKS)}; networks: {', '.join(NETWORKS)}"
        )
    return importlib.import_module(_MODULES[network]).SPEC


__all__ = ["NETWORKS", "get_spec"]
