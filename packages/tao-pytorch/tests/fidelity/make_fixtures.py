"""Regenerate fixtures.pt (not a test: pytest does not collect this file).

    /work/venv/bin/python packages/tao-pytorch/tests/fidelity/make_fixtures.py

Writes, per network, the state-dict layout (reference key names, shapes, shared names) and every
output test_fidelity.py compares. Only regenerate after checking the model against the official
code again (README.md says how): the stored outputs are the reference's numbers, and the point of
the fixture is that a change of the model's numerics fails CI until someone has done that check.
"""

import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import fidelity_cases as fc  # noqa: E402


def main() -> None:
    fixtures = {"layout": {}, "outputs": {}, "torch": str(torch.__version__)}
    for network in fc.NETWORKS:
        model = fc.build(network)
        fixtures["layout"][network] = fc.layout_of(model)
        fixtures["outputs"][network] = dict(fc.named_outputs(network, model))
        print(f"{network}: {len(fixtures['layout'][network])} keys, {len(fixtures['outputs'][network])} tensors")
    path = HERE / "fixtures.pt"
    torch.save(fixtures, path)
    print(f"wrote {path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
