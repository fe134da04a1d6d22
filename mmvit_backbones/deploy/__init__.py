"""Deployment through mmdeploy to ONNX Runtime (``tools/deploy.py``).

* :mod:`.mmdeploy_compat`: the fixes that make mmdeploy 1.3.1 work with torch 2.13, applied when imported (the
  project's deploy configs import it through ``custom_imports``).
* :mod:`.compare`: what a user gets from PyTorch and from ONNX Runtime (detections, masks, class maps), compared.

``import mmvit_backbones`` imports neither: mmdeploy is an optional dependency (``pip install .[deploy]``).
"""
import os.path as osp

from mmengine.config import Config

DEPLOY_CONFIG_DIR = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'configs', 'deploy')
DEPLOY_CONFIGS = {
    'detection': 'detection_onnxruntime_dynamic.py',
    'instance-seg': 'instance-seg_onnxruntime_dynamic.py',
    'segmentation': 'segmentation_onnxruntime_dynamic.py',
}


def model_task(cfg: Config) -> str:
    """'segmentation' (mmseg), 'instance-seg' (a detector with a mask head) or 'detection'."""
    if cfg.get('default_scope') == 'mmseg':
        return 'segmentation'
    roi_head = cfg.model.get('roi_head') or {}
    return 'instance-seg' if 'mask_head' in roi_head or 'mask_head' in cfg.model else 'detection'


def deploy_config_for(cfg: Config) -> str:
    """Path of the project's ONNX Runtime deploy config for the model config's task."""
    return osp.join(DEPLOY_CONFIG_DIR, DEPLOY_CONFIGS[model_task(cfg)])
