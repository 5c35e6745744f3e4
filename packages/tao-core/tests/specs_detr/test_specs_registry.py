"""The network -> spec registry, and the no-torch / no-tensorflow promise of these modules."""

import subprocess
import sys

import pytest

from tao_core.errors import TaoUserError
from tao_core.specs import NETWORKS, deformable_detr, dino, get_spec


def test_networks():
    assert NETWORKS == ("dino", "deformable_detr", "oneformer", "detectnet_v2")


def test_get_spec_resolves_modules():
    assert get_spec("dino") is dino.SPEC and dino.SPEC.network == dino.NETWORK == "dino"
    assert get_spec("deformable_detr") is deformable_detr.SPEC and deformable_detr.SPEC.network == "deformable_detr"
    for spec in (dino.SPEC, deformable_detr.SPEC):
        assert set(spec.tasks) == {"convert", "train", "evaluate", "inference", "export", "gen_trt_engine"}


@pytest.mark.parametrize("name,suggestion", [("dinno", "dino"), ("deformable-detr", "deformable_detr"), ("oneformr", "oneformer")])
def test_unknown_network_did_you_mean(name, suggestion):
    with pytest.raises(TaoUserError, match=f"did you mean '{suggestion}'"):
        get_spec(name)


def test_unknown_network_lists_networks():
    with pytest.raises(TaoUserError, match="networks: dino, deformable_detr"):
        get_spec("yolo")


def test_no_torch_or_tensorflow_imported():
    code = (
        "import sys; from tao_core.specs import get_spec; "
        "[get_spec(n).defaults('train') for n in ('dino', 'deformable_detr')]; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
