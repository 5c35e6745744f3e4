"""Fixtures for the model tests; the helpers themselves live in model_helpers.py."""

import pytest
from model_helpers import padded_batch, tiny_targets


@pytest.fixture
def batch():
    return padded_batch()


@pytest.fixture
def targets():
    return tiny_targets()
