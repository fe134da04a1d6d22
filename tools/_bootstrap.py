"""Shared start of the tools: work from a source checkout without installing the package, the config/launcher
handling that train.py and test.py have in common (mmdet's command-line conventions), and the checks that the
files a config reads (dataset, checkpoints) exist before anything is built."""
import os
import os.path as osp
import sys
import warnings
from typing import Iterator, List, Sequence, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

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


def usage_error(message: str) -> None:
    """Stop a tool with a message and exit status 2 (bad input), no traceback; printed once in multi-process runs."""
    if int(os.environ.get('RANK', 0)) == 0:
        print(f'error: {message}', file=sys.stderr, flush=True)
    sys.exit(2)


def _is_remote(path: str) -> bool:
    return '://' in path  # http(s)://, torchvision://, open-mmlab://, ...: fetched by mmengine, not a local file


def _datasets(dataset, key: str) -> Iterator[Tuple[str, dict]]:
    """The leaf dataset configs under a dataloader's ``dataset`` with their config keys (wrappers such as
    RepeatDataset hold ``dataset``, ConcatDataset holds ``datasets``)."""
    if not isinstance(dataset, dict):
        return
    if isinstance(dataset.get('dataset'), dict):
        yield from _datasets(dataset['dataset'], f'{key}.dataset')
    elif isinstance(dataset.get('datasets'), (list, tuple)):
        for i, child in enumerate(dataset['datasets']):
            yield from _datasets(child, f'{key}.datasets.{i}')
    else:
        yield key, dataset


def _missing_dataset_paths(key: str, dataset: dict) -> List[Tuple[str, str, str]]:
    """``(config key, path, kind)`` for what of one dataset config is not on disk: the data root, else the
    annotation file and image/label folders inside it (paths are joined with ``data_root`` as mmengine does)."""
    root = dataset.get('data_root') or ''
    if root and not _is_remote(root) and not osp.isdir(root):
        return [(f'{key}.data_root', root, 'folder')]
    missing = []
    ann_file = dataset.get('ann_file') or ''
    if ann_file and not _is_remote(ann_file):
        path = osp.join(root, ann_file)
        if not osp.isfile(path):
            missing.append((f'{key}.ann_file', path, 'file'))
    prefixes = dataset.get('data_prefix') or {}
    for name, prefix in (prefixes.items() if isinstance(prefixes, dict) else ()):
        path = osp.join(root, prefix) if prefix else root
        if prefix and not _is_remote(path) and not osp.isdir(path):
            missing.append((f'{key}.data_prefix.{name}', path, 'folder'))
    return missing


def _placeholder(path: str, kind: str) -> str:
    """``/path/to/coco/`` for a folder, ``/path/to/coco/annotations/x.json`` for a file: the tail a user recognises."""
    parts = [p for p in path.split('/') if p and p != '.']
    return '/path/to/' + '/'.join(parts[-1:] if kind == 'folder' else parts[-3:]) + ('/' if kind == 'folder' else '')


def missing_data(cfg, splits: Sequence[str]) -> str:
    """A message naming every dataset path of ``splits`` (``'train'``, ``'val'``, ``'test'``) that does not exist,
    the ``--cfg-options`` that point the config elsewhere, and the demo; ``''`` when all exist."""
    missing = []
    for split in splits:
        loader = cfg.get(f'{split}_dataloader')
        if not loader or (split != 'train' and not cfg.get(f'{split}_cfg')):
            continue
        for key, dataset in _datasets(loader.get('dataset'), f'{split}_dataloader.dataset'):
            missing += _missing_dataset_paths(key, dataset)
        evaluators = cfg.get(f'{split}_evaluator') or []
        for i, evaluator in enumerate([evaluators] if isinstance(evaluators, dict) else evaluators):
            ann_file = evaluator.get('ann_file') if isinstance(evaluator, dict) else None
            if ann_file and not _is_remote(ann_file) and not osp.isfile(ann_file):
                key = f'{split}_evaluator' if isinstance(evaluators, dict) else f'{split}_evaluator.{i}'
                missing.append((f'{key}.ann_file', ann_file, 'file'))
    if not missing:
        return ''
    lines = ['the dataset this config reads is not on this machine:']
    lines += [f'  {key} = {path!r}: no such {kind}' for key, path, kind in missing]
    options = ' '.join(f'{key}={_placeholder(path, kind)}' for key, path, kind in missing)
    lines += ['Put the dataset there (a symbolic link will do), or point the config at your copy:',
              f'  --cfg-options {options}',
              'To try the project without a dataset: bash tools/demo.sh (trains and evaluates a detector on '
              'generated data).']
    return '\n'.join(lines)


def _init_checkpoints(node, key: str) -> Iterator[Tuple[str, str, str]]:
    """``(config key, checkpoint, model type)`` for every ``init_cfg=dict(type='Pretrained', checkpoint=...)``."""
    if isinstance(node, dict):
        init_cfgs = node.get('init_cfg')
        for i, init_cfg in enumerate(init_cfgs if isinstance(init_cfgs, (list, tuple)) else [init_cfgs]):
            if isinstance(init_cfg, dict) and init_cfg.get('type') == 'Pretrained' and init_cfg.get('checkpoint'):
                where = f'{key}.init_cfg' if isinstance(init_cfgs, dict) else f'{key}.init_cfg.{i}'
                yield f'{where}.checkpoint', str(init_cfg['checkpoint']), str(node.get('type', ''))
        for name, value in node.items():
            if name != 'init_cfg':
                yield from _init_checkpoints(value, f'{key}.{name}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _init_checkpoints(value, f'{key}.{i}')


def _weights_hint(model_type: str) -> str:
    from mmvit_backbones.registry import MODELS
    cls = MODELS.get(model_type) if model_type else None
    return getattr(cls, 'weights_hint', '') if cls is not None else ''


def missing_init_checkpoints(cfg) -> str:
    """A message naming every ``init_cfg`` checkpoint of the model that is not on disk, where the official weights
    are and how to train from scratch instead; ``''`` when all exist (remote ones are left to mmengine)."""
    lines = []
    for key, path, model_type in _init_checkpoints(cfg.get('model'), 'model'):
        if _is_remote(path) or osp.isfile(osp.expanduser(path)):
            continue
        owner = key[:-len('.init_cfg.checkpoint')] if key.endswith('.init_cfg.checkpoint') else key
        lines += ['the pretrained weights this config loads are not on this machine:',
                  f'  {key} = {path!r}: no such file']
        hint = _weights_hint(model_type)
        if hint:
            lines.append(f'Where the official {model_type.split(".")[-1]} weights are: {hint}')
        lines += ['Save the file there, or point the config at your copy:',
                  f'  --cfg-options {key}=/path/to/{osp.basename(path)}',
                  f'To train from scratch instead: --cfg-options {owner}.init_cfg=None']
    return '\n'.join(lines)


def missing_checkpoint(path: str, what: str, fix: str) -> str:
    """A message for a checkpoint file given on the command line or as ``load_from`` that is not on disk."""
    if not path or _is_remote(path) or osp.isfile(osp.expanduser(path)):
        return ''
    return f'{what} {path!r} does not exist.\n{fix}'


def exit_if_missing(*messages: str) -> None:
    """Stop with one message and exit status 2 when a file the run needs is missing (before any model is built:
    otherwise the error surfaces minutes later as a library traceback)."""
    found = [m for m in messages if m]
    if found:
        usage_error('\n\n'.join(found))
