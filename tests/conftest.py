import os.path as osp

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PARITY_DIR = osp.join(ROOT, 'tests', 'data', 'parity')


@pytest.fixture(scope='session')
def coco_shapes(tmp_path_factory) -> str:
    """A small COCO-format synthetic instance dataset (shared by the tests of one session)."""
    from mmvit_backbones.testing.synthetic_data import make_coco_shapes
    root = str(tmp_path_factory.mktemp('coco_shapes'))
    make_coco_shapes(root, num_train=8, num_val=4, size=(128, 160), seed=1)
    return root


@pytest.fixture(scope='session')
def ade_shapes(tmp_path_factory) -> str:
    """A small ADE20K-format synthetic semantic dataset; returns the directory holding ADEChallengeData2016."""
    from mmvit_backbones.testing.synthetic_data import make_ade_shapes
    root = str(tmp_path_factory.mktemp('ade_shapes'))
    return make_ade_shapes(root, num_train=4, num_val=2, size=(128, 160), seed=1)


@pytest.fixture(autouse=True)
def global_torch_state_is_restored():
    """Tests share one process: a tool's main() or a helper that leaves autograd off (or changes the thread
    count) breaks whichever test runs next, far from the cause. Fail the test that leaked instead."""
    import torch
    grad, threads = torch.is_grad_enabled(), torch.get_num_threads()
    yield
    assert torch.is_grad_enabled() == grad, 'this test left autograd switched off (use torch.no_grad() as a context)'
    assert torch.get_num_threads() == threads, (f'this test left torch at {torch.get_num_threads()} threads '
                                                f'(was {threads}); restore it')
