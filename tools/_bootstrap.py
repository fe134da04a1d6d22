"""Shared start of the tools: work from a source checkout without installing the package, and the config/launcher
handling that train.py and test.py have in common (mmdet's command-line conventions)."""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import warnings

# mmengine 0.10.7 imports pkg_resources (needed for mmdet::/mmseg:: base configs); its deprecation notice is noise.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)


def add_common_args(parser) -> None:
    """Arguments shared by tools/train.py and tools/test.py."""
    from mmengine.config import DictAction
    parser.add_argument('--work-dir', help='the directory for logs, checkpoints and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.backbone.arch=ti')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def load_config(args):
    """The config with ``--cfg-options`` merged, the launcher set and ``work_dir`` resolved like mmdet's tools."""
    import os
    import os.path as osp

    from mmengine.config import Config
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.launcher != 'none':
        setup_distributed(cfg)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def setup_distributed(cfg) -> None:
    """Multi-process runs on machines without a CUDA GPU: the gloo backend and no CUDA call.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` whatever the backend, so on a CPU machine (or a
    CUDA build of torch without a driver) it dies before any communication. Without CUDA the tools therefore start
    the process group themselves, with gloo and the ``env://`` rendezvous that torchrun (``tools/dist_train.sh``)
    sets up; the Runner then finds it initialised and skips its own ``init_dist``. The model is wrapped for the CPU
    (``device_ids=None``), and ``SyncBN``, which torch implements for GPUs only, becomes per-process ``BN`` (logged).
    With CUDA nothing changes: nccl and mmengine's own set-up, as before.
    """
    import os

    import torch
    import torch.distributed as dist
    if torch.cuda.is_available():
        return
    if cfg.launcher != 'pytorch':
        raise SystemExit(f'--launcher {cfg.launcher} needs CUDA GPUs (mmengine sets a CUDA device); on a machine '
                         f'without a GPU run several processes with torchrun: bash tools/dist_train.sh CONFIG N')
    env_cfg = cfg.setdefault('env_cfg', {})
    env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    # mmengine's default wrapper, except that DDP of a CPU module takes no device ids
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel', broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    sync_bn = cfg.get('sync_bn') is not None  # mmengine's switch that turns every BN into SyncBN
    cfg.sync_bn = None
    if (_replace_sync_bn(cfg._cfg_dict) or sync_bn) and int(os.environ.get('RANK', 0)) == 0:
        print('[mmvit_backbones] no CUDA: SyncBN layers of the config run as per-process BN (torch has no CPU '
              'SyncBatchNorm); their batch statistics are not synchronised across processes.', flush=True)
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://')


def _replace_sync_bn(node) -> bool:
    found = False
    if isinstance(node, dict):
        if node.get('type') in ('SyncBN', 'MMSyncBN', 'SyncBatchNorm'):
            node['type'] = 'BN'
            found = True
        for value in node.values():
            found = _replace_sync_bn(value) or found
    elif isinstance(node, (list, tuple)):
        for value in node:
            found = _replace_sync_bn(value) or found
    return found


def close_distributed() -> None:
    """Leave the process group before the interpreter exits: gloo's threads torn down at exit can abort the process
    ("terminate called without an active exception") after a successful run; mmengine never destroys the group."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
