"""Fixtures shared by the backbone test modules: each module names its parity fixture file in ``FIXTURE``."""
import os.path as osp

import pytest
import torch

PARITY_DIR = osp.join(osp.dirname(osp.abspath(__file__)), '..', '..', 'data', 'parity')


@pytest.fixture(scope='module')
def fixture(request) -> dict:
    """The module's parity fixture (``FIXTURE``: a file name in tests/data/parity, or a path)."""
    return torch.load(osp.join(PARITY_DIR, request.module.FIXTURE), map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def official(fixture) -> dict:
    """The official-layout weights of the module's parity fixture."""
    from mmvit_backbones.testing.parity import official_state_dict
    return official_state_dict(fixture)
