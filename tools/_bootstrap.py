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
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg
