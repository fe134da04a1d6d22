"""Checkpoint reading: wrappers, prefixes, missing files, and weights_only safety for mmengine checkpoints."""
import os
import pickle

import pytest
import torch

from mmvit_backbones.checkpoint import CheckpointError, extract_state_dict, read_checkpoint, safe_torch_load


def test_extract_state_dict_wrappers_and_prefixes():
    weights = {'a.weight': torch.ones(1), 'b.bias': torch.zeros(1)}
    assert extract_state_dict(weights) == weights
    assert extract_state_dict({'model': weights, 'epoch': 1}) == weights
    assert extract_state_dict({'state_dict': {'x': torch.ones(1)}, 'state_dict_ema': weights}) == weights
    assert extract_state_dict({'student': {'x': torch.ones(1)}, 'teacher': {'backbone.' + k: v
                                                                            for k, v in weights.items()}}) == weights
    assert extract_state_dict({'module.' + k: v for k, v in weights.items()}) == weights
    detector = {'backbone.a.weight': torch.ones(1), 'backbone.b.bias': torch.zeros(1), 'neck.c': torch.ones(1)}
    assert extract_state_dict({'state_dict': detector}) == weights
    assert extract_state_dict({'state_dict': detector}, prefix='neck.') == {'c': detector['neck.c']}
    with pytest.raises(CheckpointError, match='prefix'):
        extract_state_dict(weights, prefix='backbone.')
    with pytest.raises(CheckpointError, match='Cannot find weights'):
        extract_state_dict({'epoch': 3, 'args': 'x'})


def test_missing_file_names_where_to_get_it():
    with pytest.raises(FileNotFoundError, match='Where to get it: somewhere'):
        read_checkpoint('/no/such/file.pth', weights_hint='somewhere')


class _Payload:
    def __reduce__(self):
        return (os.system, ('echo should-never-run',))


def test_arbitrary_pickles_are_refused(tmp_path):
    path = str(tmp_path / 'evil.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'payload': _Payload()}, path)
    with pytest.raises(CheckpointError, match='Refusing to load'):
        safe_torch_load(path)
    # mmengine's own loader (used by tools/test.py, --resume, load_from) refuses it the same way
    from mmengine.runner.checkpoint import CheckpointLoader
    with pytest.raises(CheckpointError, match='arbitrary code'):
        CheckpointLoader.load_checkpoint(path)


def test_mmengine_message_hub_loads_with_weights_only(tmp_path):
    import numpy as np
    from mmengine.logging import HistoryBuffer, MessageHub
    hub = MessageHub.get_instance('checkpoint-test')
    hub.update_scalar('train/loss', np.float64(0.5))
    hub.update_scalar('train/lr', 0.1)
    hub.update_info('iter', np.int64(7))
    path = str(tmp_path / 'epoch_1.pth')
    torch.save({'state_dict': {'w': torch.ones(1)}, 'message_hub': hub.state_dict(),
                'meta': {'epoch': 1, 'dataset_meta': {'classes': ('a', 'b')}}}, path)
    loaded = safe_torch_load(path)
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer) and buffer.current() == 0.5
    assert pickle.dumps(loaded['meta']['dataset_meta'])


@pytest.mark.parametrize('content', [b'conv.weight 1 2 3\n', b'<!DOCTYPE html><html>Sign in</html>', b'',
                                     b'\x89PNG\r\n\x1a\n' + bytes(range(256)), b'PK\x03\x04truncated zip'],
                         ids=['text', 'html', 'empty', 'image', 'truncated-zip'])
def test_not_a_checkpoint_is_named(tmp_path, content):
    """A file that is no checkpoint at all fails with a message naming it, not an IndexError from torch's internals,
    through the path of init_cfg (load_pretrained) as well."""
    from mmvit_backbones.checkpoint import load_pretrained
    path = str(tmp_path / 'weights.pth')
    with open(path, 'wb') as f:
        f.write(content)
    with pytest.raises(CheckpointError, match=r"weights\.pth' is not a PyTorch checkpoint"):
        safe_torch_load(path)
    with pytest.raises(CheckpointError, match='not a PyTorch checkpoint'):
        load_pretrained(torch.nn.Linear(2, 2), path)
