"""DINO and Deformable DETR still compute what the official code computes.

fixtures.pt holds, per network, the state-dict layout under the reference key names and the
outputs of a small model (deterministic weights, a padded batch, one seeded training step)
that were checked against IDEA-Research/DINO and fundamentalvision/Deformable-DETR (README.md:
worst relative difference 1.2e-6 / 3.4e-7). Any later change of the numerics or of the key layout
fails here until it has been checked against the reference again and the fixture regenerated
(make_fixtures.py).
"""

from pathlib import Path

import fidelity_cases as fc
import pytest
import torch

FIXTURES = torch.load(Path(__file__).with_name("fixtures.pt"), weights_only=True)
TOLERANCE = 1e-4  # the project's fidelity bar (relative); the measured agreement is ~1e-6 or better


@pytest.fixture(scope="module", params=fc.NETWORKS)
def case(request):
    network = request.param
    return network, fc.build(network, FIXTURES["layout"][network])


def _relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double() - want.double()).norm() / want.double().norm().clamp_min(1e-12)).item()


def test_state_dict_keeps_the_reference_layout(case):
    """Reference checkpoints load by name: same keys, order, shapes and shared heads as when the
    fixture was checked against the official code (building `case` already loaded the stored
    layout with strict=True)."""
    network, model = case
    got = [(k, tuple(s), a) for k, s, a in fc.layout_of(model)]
    want = [(k, tuple(s), a) for k, s, a in FIXTURES["layout"][network]]
    assert got == want


def test_outputs_match_the_checked_fixture(case):
    network, model = case
    stored = FIXTURES["outputs"][network]
    got = fc.named_outputs(network, model)
    assert list(got) == list(stored)
    bad = {}
    for name, want in stored.items():
        err = _relative(got[name], want)
        if err > TOLERANCE or not torch.allclose(got[name], want, rtol=TOLERANCE, atol=1e-5):
            bad[name] = f"{err:.2e}"
    assert not bad, f"{network}: outputs drifted from the reference-checked fixture (relative error): {bad}"


def test_fixture_detects_the_other_networks_position_convention(case):
    """Negative control: swapping the sine-embedding convention (DINO <-> Deformable DETR, the bug
    this fixture was made for) moves the outputs far beyond the tolerance."""
    network, model = case
    pos = model.backbone[1]
    own = pos.normalize_offset
    pos.normalize_offset = 0.5 - own
    try:
        model.eval()
        with torch.no_grad():
            out = model(fc.padded_input())
    finally:
        pos.normalize_offset = own
    stored = FIXTURES["outputs"][network]
    # measured: DINO 2.9e-1 / 1.5e-1 (boxes / logits), Deformable DETR 9.7e-3 / 2.2e-2
    assert _relative(out["pred_boxes"], stored["eval.pred_boxes"]) > 10 * TOLERANCE
    assert _relative(out["pred_logits"], stored["eval.pred_logits"]) > 10 * TOLERANCE
