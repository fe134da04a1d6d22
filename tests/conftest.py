import os.path as osp
from dataclasses import dataclass

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


@dataclass
class TrainedDetector:
    config: str  # the config file, validation and test set = the training images
    checkpoint: str
    untrained_map: float  # COCO bbox mAP on the training images before and after training
    trained_map: float


@pytest.fixture(scope='session')
def trained_retinanet(coco_shapes, tmp_path_factory) -> TrainedDetector:
    """The tiny RetinaNet + PyramidTNT trained 40 epochs on the 8 synthetic training images, evaluated on them: 8
    images cannot teach generalisation, but a detector that learned nothing scores ~0 there while one that learned
    localises the shapes it saw. Shared by the training test and the deployment test."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner

    import mmvit_backbones  # noqa: F401
    from mmvit_backbones.testing.cpu_configs import tiny_retinanet
    work = tmp_path_factory.mktemp('trained_retinanet')
    cfg = tiny_retinanet(Config.fromfile(osp.join(ROOT, 'configs', 'retinanet_pyramidtnt_s_1x.py')), coco_shapes,
                         epochs=40)
    for key in ('val_dataloader', 'test_dataloader'):
        cfg[key].dataset.ann_file = 'annotations/instances_train2017.json'
        cfg[key].dataset.data_prefix = dict(img='train2017/')
    for key in ('val_evaluator', 'test_evaluator'):
        cfg[key].ann_file = osp.join(coco_shapes, 'annotations', 'instances_train2017.json')
    cfg.work_dir = str(work)
    config = str(work / 'tiny_retinanet.py')
    cfg.dump(config)
    init_default_scope('mmdet')
    runner = Runner.from_cfg(cfg)
    untrained = runner.val_loop.run()['coco/bbox_mAP']
    runner.train()
    trained = runner.val_loop.run()['coco/bbox_mAP']
    return TrainedDetector(config, str(work / 'epoch_40.pth'), untrained, trained)


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
