"""Loading official and converted checkpoints into the backbones, and safe loading of mmengine checkpoints.

One path serves every backbone and every entry point (``init_cfg=dict(type='Pretrained')``,
``tools/convert_checkpoint.py``, ``tools/check_parity.py``):

1. :func:`read_checkpoint` reads the file with ``torch.load(weights_only=True)`` and explains what to do when it is
   missing or holds arbitrary pickled objects;
2. :func:`extract_state_dict` unwraps the training-script containers the official repositories save
   (``state_dict_ema`` > ``teacher`` > ``model`` > ``state_dict``; the EMA weights are the published ones) and strips
   ``module.`` and ``backbone.`` prefixes;
3. the backbone's own ``convert_checkpoint`` maps official key names onto the module's and drops classifier heads
   (idempotent: an already converted dict passes through);
4. ``load_state_dict(strict=False)``, where each backbone's load-time pre-hooks resize resolution-dependent tensors,
   followed by a report of what was missing/unexpected and a clear error for a checkpoint of another model.
"""
import os
import os.path as osp
import pickle
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from mmengine.logging import print_log

StateDict = Dict[str, torch.Tensor]

# Container keys of training checkpoints, in order of preference. EMA weights are what the official repositories
# publish and evaluate (T2T-ViT `state_dict_ema`, timm `state_dict_ema`); DINO full checkpoints hold the teacher.
CONTAINER_KEYS = ('state_dict_ema', 'model_ema', 'teacher', 'model', 'state_dict', 'module', 'net')
STRIPPED_PREFIXES = ('module.', 'backbone.', '_orig_mod.')


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used, with the reason and the fix in the message."""


def read_checkpoint(path: str, weights_hint: str = '') -> Any:
    """``torch.load`` a file safely (``weights_only=True``) with actionable errors."""
    path = osp.expanduser(str(path))
    if path.startswith(('http://', 'https://', 'torchvision://', 'open-mmlab://', 'mmcls://')):
        from mmengine.runner.checkpoint import CheckpointLoader
        return CheckpointLoader.load_checkpoint(path, map_location='cpu')
    if not osp.isfile(path):
        hint = f'\n  Where to get it: {weights_hint}' if weights_hint else ''
        raise FileNotFoundError(
            f'Checkpoint file not found: {path!r}.{hint}\n  To train from scratch instead, set the backbone\'s '
            f'init_cfg=None (e.g. --cfg-options model.backbone.init_cfg=None).')
    if path.endswith('.npz'):
        return read_npz(path)
    return safe_torch_load(path)


def read_npz(path: str) -> StateDict:
    """A numpy ``.npz`` archive (e.g. the official JAX/Flax checkpoints, a flattened parameter tree with keys like
    ``stem/kernel``) as a flat ``{key: tensor}`` dict, keys and layouts unchanged (the backbone's converter maps them).
    Pickled objects are refused (``allow_pickle=False``)."""
    import numpy as np
    with np.load(path, allow_pickle=False) as archive:
        return {key: torch.from_numpy(np.array(archive[key])) for key in archive.files}


def safe_torch_load(path: str, map_location: Any = 'cpu') -> Any:
    """``torch.load(weights_only=True)``; a file holding other pickled objects is refused with a clear message."""
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint file not found: {path!r}')
    with open(path, 'rb') as f:
        head = f.read(4)
    # torch.save writes a zip archive (torch >= 1.6) or a pickle (protocol >= 2 starts with 0x80); anything else
    # (text, HTML of a failed download, an image) would reach torch's unpickler as garbage and fail obscurely there
    if not (head.startswith(b'PK\x03\x04') or head[:1] == b'\x80'):
        raise _not_a_checkpoint(path, 'neither a zip archive nor a pickle')
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if 'Unsupported operand' in str(err):  # bytes that are no pickle at all
            raise _not_a_checkpoint(path, err) from None
        lines = [ln.strip() for ln in str(err).splitlines() if 'nsupported' in ln or 'error:' in ln]
        raise CheckpointError(
            f'Refusing to load {path!r}: it contains pickled Python objects that are not plain tensors/containers '
            f'or the types mmengine writes, and loading them could run arbitrary code.\n'
            f'  Detail: {lines[0] if lines else str(err).splitlines()[0]}\n'
            f'  Fix: if you trust the file, re-save only its weights, e.g. '
            f'`torch.save(torch.load(f, weights_only=False)["state_dict"], "weights.pth")`, or convert it with '
            f'tools/convert_checkpoint.py.') from None
    except (EOFError, IndexError, KeyError, ValueError, RuntimeError) as err:
        # what torch raises from inside its unpickler/zip reader for a truncated download or a zip of something else
        raise _not_a_checkpoint(path, f'torch.load: {type(err).__name__}: {str(err).splitlines()[0]}') from None


def _not_a_checkpoint(path: str, reason: object) -> 'CheckpointError':
    with open(path, 'rb') as f:
        head = f.read(32)
    looks = 'text' if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head) else 'binary data'
    reason = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
    return CheckpointError(
        f'{path!r} is not a PyTorch checkpoint: {osp.getsize(path)} bytes of {looks} starting with {head!r} '
        f'({reason}).\n'
        f'  Fix: point init_cfg/--checkpoint at a .pth/.pt/.pth.tar file saved by torch.save (re-download it if the '
        f'download was cut short or saved an HTML page), or train from scratch with init_cfg=None.')


_INSTALLED = False


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """The only ``getattr`` an mmengine checkpoint needs: ``HistoryBuffer`` pickles its statistics methods
    (``HistoryBuffer.min`` ...) by name. Any other attribute lookup is refused."""
    from mmengine.logging.history_buffer import HistoryBuffer
    if obj is HistoryBuffer and name in {'min', 'max', 'current', 'mean', *HistoryBuffer._statistics_methods}:
        return getattr(obj, name)
    raise pickle.UnpicklingError(f'refusing getattr({obj!r}, {name!r}) while loading a checkpoint')


def _mmengine_checkpoint_types() -> List[Any]:
    """Exactly the non-tensor Python objects mmengine 0.10.x pickles into its training checkpoints: the
    ``MessageHub`` state holds ``HistoryBuffer`` objects (their logs are numpy arrays and scalars, their statistics
    methods are pickled as ``getattr(HistoryBuffer, name)``)."""
    import numpy as np
    from mmengine.logging.history_buffer import HistoryBuffer
    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = [type(np.dtype(t)) for t in ('float64', 'float32', 'float16', 'int64', 'int32', 'uint8', 'bool')]
    return [HistoryBuffer, np.ndarray, np.dtype, _reconstruct, scalar, (_history_buffer_getattr, 'builtins.getattr')
            ] + dtypes


def allow_mmengine_checkpoint_types() -> None:
    """Keep ``torch.load(weights_only=True)`` (torch >= 2.6) and still load mmengine's own checkpoints.

    mmengine 0.10.7 calls ``torch.load`` without ``weights_only``, so training checkpoints fail to resume or test
    (``Unsupported global ... HistoryBuffer``). Instead of turning the safety off, the types mmengine writes are
    allow-listed, and mmengine's local-file loader is replaced by :func:`safe_torch_load`, which refuses any other
    pickled object with a message that names the file and the fix.
    """
    global _INSTALLED
    if _INSTALLED:
        return
    torch.serialization.add_safe_globals(_mmengine_checkpoint_types())
    from mmengine.runner.checkpoint import CheckpointLoader
    CheckpointLoader.register_scheme(prefixes='', force=True)(safe_torch_load)
    _INSTALLED = True


def _strip(state: Mapping[str, Any], prefix: str) -> Dict[str, Any]:
    return {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in state.items()}


def extract_state_dict(checkpoint: Any, prefix: Optional[str] = None) -> StateDict:
    """Unwrap a training checkpoint into a flat ``{name: tensor}`` dict.

    Args:
        checkpoint: what ``torch.load`` returned.
        prefix: keep only keys under this prefix (e.g. ``'backbone.'`` of a detector checkpoint) and strip it.
            ``None`` strips the usual wrapper prefixes (``module.``, ``backbone.``) where all keys carry them.
    """
    state = checkpoint
    while isinstance(state, Mapping) and not _is_tensor_dict(state):
        inner = next((state[k] for k in CONTAINER_KEYS if isinstance(state.get(k), Mapping) and state[k]), None)
        if inner is None:
            raise CheckpointError(
                f'Cannot find weights in the checkpoint: top-level keys are {sorted(state)[:12]}; expected a flat '
                f'state dict or one wrapped in {list(CONTAINER_KEYS)}.')
        state = inner
    if not isinstance(state, Mapping):
        raise CheckpointError(f'A checkpoint must be a dict of tensors, got {type(state).__name__}.')
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if prefix:
        picked = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not picked:
            raise CheckpointError(f'No key of the checkpoint starts with prefix {prefix!r} '
                                  f'(first keys: {list(state)[:5]}).')
        return picked
    for p in STRIPPED_PREFIXES:
        if any(k.startswith(p) for k in state):
            # DINO teachers / detector checkpoints: keep the backbone part only when it is a sub-tree.
            if p == 'backbone.' and not all(k.startswith(p) for k in state):
                state = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
            else:
                state = _strip(state, p)
    return state


def _is_tensor_dict(d: Mapping) -> bool:
    return len(d) > 0 and sum(isinstance(v, torch.Tensor) for v in d.values()) >= max(1, len(d) // 2)


@dataclass
class LoadReport:
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f'loaded {len(self.loaded)} tensors']
        if self.missing:
            lines.append(f'missing in checkpoint (kept their initialisation) {len(self.missing)}: '
                         f'{_summarise(self.missing)}')
        if self.unexpected:
            lines.append(f'unexpected in checkpoint (ignored) {len(self.unexpected)}: {_summarise(self.unexpected)}')
        return '; '.join(lines)


def _summarise(keys: List[str], limit: int = 12) -> str:
    return ', '.join(keys[:limit]) + (f', ... (+{len(keys) - limit})' if len(keys) > limit else '')


def load_pretrained(model: torch.nn.Module, checkpoint: Union[str, os.PathLike, Mapping[str, Any]],
                    prefix: Optional[str] = None, logger: str = 'current') -> LoadReport:
    """Load an official or converted checkpoint (path or already loaded object) into a backbone.

    Raises:
        FileNotFoundError: the file does not exist (the message says where official weights come from).
        CheckpointError: the file is not a checkpoint of this model (too few matching keys) or has wrong shapes.
    """
    name = type(model).__name__
    source = checkpoint if isinstance(checkpoint, (str, os.PathLike)) else '<state dict>'
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_checkpoint(checkpoint, getattr(model, 'weights_hint', ''))
    state = extract_state_dict(checkpoint, prefix)
    convert = getattr(model, 'convert_checkpoint', None)
    if convert is not None:
        state = convert(state)
    own = model.state_dict()
    matched = [k for k in state if k in own]
    needed = [k for k in own if not k.endswith('num_batches_tracked')]
    if len(matched) < 0.5 * len([k for k in needed if not _is_new(model, k)]):
        raise CheckpointError(
            f'{source} does not look like a {name} checkpoint: only {len(matched)} of its {len(state)} tensors match '
            f'the {len(needed)} of the model (checkpoint keys start with {list(state)[:4]}). Check that the file '
            f'belongs to this architecture, or convert it first with tools/convert_checkpoint.py.')
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise CheckpointError(f'{source} matches {name} by name but not by shape; it is probably another variant '
                              f'(check `arch`).\n{err}') from None
    report = LoadReport(loaded=matched,
                        missing=[k for k in result.missing_keys if not k.endswith('num_batches_tracked')],
                        unexpected=list(result.unexpected_keys))
    new = [k for k in report.missing if _is_new(model, k)]
    report.missing = [k for k in report.missing if not _is_new(model, k)]
    msg = f'{name}: loaded {source}: {report}'
    if new:
        msg += f'; {len(new)} tensors of the dense-prediction adapter are new (not in ImageNet checkpoints)'
    print_log(msg, logger=logger)
    return report


def _is_new(model: torch.nn.Module, key: str) -> bool:
    return key.startswith(tuple(getattr(model, 'new_param_prefixes', ())))
