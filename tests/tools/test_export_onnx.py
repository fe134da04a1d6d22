"""ONNX export with a dynamic input size: every backbone, a shipped RetinaNet and a shipped UPerNet, checked in
onnxruntime at sizes other than the export size (non-square, not multiples of 32, another batch size)."""
import os.path as osp

import onnx
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.config import Config

import mmvit_backbones
from mmvit_backbones.export import (
    LOWEST_OPSET,
    ExportableAdaptiveAvgPool2d,
    ExportError,
    compare_with_onnxruntime,
    export_onnx,
    exportable_modules,
)
from mmvit_backbones.models.backbones import PyramidBackbone
from mmvit_backbones.models.layers.traceable import bicubic_matrix, repeated_max_pool
from mmvit_backbones.registry import MODELS
from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES, shrink_config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EXPORT_HW = (64, 96)
# the export size, one larger, non-square and odd (not a multiple of 32 or of any patch), one smaller with the aspect
# ratio swapped at batch 2 (the exported batch is 1)
CHECK_SHAPES = ((1, 3, 64, 96), (1, 3, 93, 115), (2, 3, 71, 53))

BACKBONES = sorted(name for name in mmvit_backbones.__all__
                   if isinstance(getattr(mmvit_backbones, name), type)
                   and issubclass(getattr(mmvit_backbones, name), PyramidBackbone)
                   and getattr(mmvit_backbones, name) is not PyramidBackbone)
# settings whose size-dependent code the small defaults do not reach at these sizes
SPECIAL_CASES = {
    # the number of extra global-query pools changes with the input size (1 at 64x96, 2 at 93x115 for level 2)
    'GCViT-window2': ('GCViT', dict(arch=dict(embed_dims=32, depths=(1, 1, 2, 1), num_heads=(1, 2, 4, 8),
                                              mlp_ratio=2), window_size=2)),
    # windowed attention with padded, masked windows; DINO's position-embedding rule at and off its pretraining grid
    'PlainViT-windows': ('PlainViT', dict(arch=dict(embed_dims=96, depth=3, num_heads=3), window_size=3,
                                          window_block_indexes=(0, 2), pretrain_img_size=64)),
    # token mixing in shifted 4x4 windows (the pretraining grid of a 64 px image): several windows, shifted or not
    'MLPMixer-windows': ('MLPMixer', dict(arch=dict(embed_dims=64, depth=2, tokens_mlp_dims=32, channels_mlp_dims=128,
                                                    patch_size=16), pretrain_img_size=64)),
}


def check_export(model: nn.Module, tmp_path, shapes=CHECK_SHAPES, opset: int = 17) -> None:
    path = str(tmp_path / 'model.onnx')
    names = export_onnx(model, torch.randn(1, 3, *EXPORT_HW), path, dynamic=True, opset=opset)
    graph_input = onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in graph_input] == ['batch', '', 'height', 'width']  # really dynamic
    results = compare_with_onnxruntime(model, path, shapes)
    report = '\n'.join(line for r in results for line in r.lines())
    print(report)
    assert [r.shape for r in results] == list(shapes)
    assert all(r.ok for r in results), report
    assert all(len(r.diffs) == len(names) for r in results), report


@pytest.mark.parametrize('name', BACKBONES)
def test_backbone_exports_with_dynamic_size(name, tmp_path):
    assert name in SMALL_BACKBONES, \
        f'{name}: add its small variant to mmvit_backbones.testing.cpu_configs.SMALL_BACKBONES'
    torch.manual_seed(0)
    model = MODELS.build(dict(type=name, **SMALL_BACKBONES[name])).eval()
    check_export(model, tmp_path)


@pytest.mark.parametrize('name', BACKBONES)
def test_backbone_is_valid_at_the_lowest_opset(name, tmp_path):
    """Opset 11 (mmdeploy's default) has no integer Clip/Min and no Einsum: no backbone may need them."""
    torch.manual_seed(0)
    model = MODELS.build(dict(type=name, **SMALL_BACKBONES[name])).eval()
    check_export(model, tmp_path, CHECK_SHAPES[1:], opset=LOWEST_OPSET)


def test_too_low_opset_names_the_lowest_that_works(tmp_path):
    class Bilinear(nn.Module):  # einsum: an ONNX operator from opset 12
        def forward(self, x):
            return torch.einsum('bchw,bdhw->bcd', x, x)

    with pytest.raises(ExportError, match=r'cannot be exported at opset 11: .*einsum.*the lowest opset that works is '
                       r'12 \(--opset 12\)'):
        export_onnx(Bilinear(), torch.randn(1, 3, 8, 8), str(tmp_path / 'm.onnx'), opset=11)
    assert not (tmp_path / 'm.onnx').exists()


def test_export_tool_reverts_syncbn(tmp_path, capsys):
    """Shipped UPerNets normalise with SyncBN, whose empty-input test tracing would fix: the tool converts it to
    BatchNorm as mmseg's own tools do (in eval mode the same computation)."""
    tool = _export_tool()
    cfg = shrink_config(Config.fromfile(osp.join(ROOT, 'configs', 'upernet_gcvit_t_160k.py')), str(tmp_path),
                        small_backbone=True)
    cfg.model.decode_head.norm_cfg = cfg.model.auxiliary_head.norm_cfg = dict(type='SyncBN', requires_grad=True)
    cfg.dump(str(tmp_path / 'syncbn.py'))
    out = str(tmp_path / 'model.onnx')
    status = tool.main([str(tmp_path / 'syncbn.py'), '--out', out, '--shape', '64', '96', '--dynamic'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert 'onnxruntime vs PyTorch: ok at 3 input shape(s)' in printed, printed


def _export_tool():
    import sys
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import export_onnx as tool
    finally:
        sys.path.pop(0)
    return tool


@pytest.mark.parametrize('case', sorted(SPECIAL_CASES))
def test_size_dependent_paths_export(case, tmp_path):
    name, kwargs = SPECIAL_CASES[case]
    torch.manual_seed(0)
    model = MODELS.build(dict(type=name, **kwargs)).eval()
    check_export(model, tmp_path, CHECK_SHAPES + ((1, 3, 64, 64), ))  # 64x64: the 4x4 pretraining grid of the ViT


def test_size_fixed_by_tracing_is_an_error(tmp_path):
    """A Python branch on the input size would be baked into the graph: the export refuses and names the line."""
    class PadIfNeeded(nn.Module):
        def forward(self, x):
            if x.shape[-1] % 32:
                x = F.pad(x, (0, 32 - x.shape[-1] % 32))
            return x * 2

    with pytest.raises(ExportError, match=r'test_export_onnx\.py:\d+'):
        export_onnx(PadIfNeeded(), torch.randn(1, 3, 8, 40), str(tmp_path / 'm.onnx'))
    assert not (tmp_path / 'm.onnx').exists()


@pytest.mark.parametrize('config, small', [('configs/retinanet_shunted_s_1x.py', 'ShuntedTransformer'),
                                           ('configs/upernet_vit_s_160k.py', 'PlainViT')])
def test_export_tool_whole_model(config, small, tmp_path, capsys):
    """tools/export_onnx.py on a shipped detector/segmentor (small backbone, narrow neck/head): tensor mode exports
    and matches PyTorch at three shapes."""
    import sys
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import export_onnx as tool
    finally:
        sys.path.pop(0)
    cfg = shrink_config(Config.fromfile(osp.join(ROOT, config)), str(tmp_path / 'data'), small_backbone=True)
    assert cfg.model.backbone.type == small
    small_cfg = str(tmp_path / 'small.py')
    cfg.dump(small_cfg)
    out = str(tmp_path / 'model.onnx')
    status = tool.main([small_cfg, '--out', out, '--shape', '64', '96', '--dynamic'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert 'onnxruntime vs PyTorch: ok at 3 input shape(s)' in printed, printed
    assert printed.count('max|diff|') == 3 * len(onnx.load(out).graph.output), printed  # every output, every shape
    session_outputs = onnx.load(out).graph.output
    if 'retinanet' in config:  # raw head outputs: class scores and box regressions of 5 FPN levels
        assert len(session_outputs) == 10
    else:  # the decode head's logits
        assert len(session_outputs) == 1


def test_backbone_only_from_a_config(tmp_path, capsys):
    import sys
    sys.path.insert(0, osp.join(ROOT, 'tools'))
    try:
        import export_onnx as tool
    finally:
        sys.path.pop(0)
    out = str(tmp_path / 'backbone.onnx')
    status = tool.main(['BoTNet', '--out', out, '--shape', '64', '96', '--dynamic', '--cfg-options', 'arch=26t',
                        'out_indices=(1,3)'])
    printed = capsys.readouterr().out
    assert status == 0, printed
    assert 'outputs: level1, level3' in printed


# ------------------------------------------------------------------------------------------- traceable helpers
@pytest.mark.parametrize('src, dst', [(7, 5), (7, 14), (4, 33), (14, 14), (1, 3)])
def test_bicubic_matrix_is_pytorch_bicubic(src, dst):
    grid = torch.randn(2, 3, src, src + 1)
    expected = F.interpolate(grid, size=(dst, dst + 2), mode='bicubic', align_corners=False)
    got = bicubic_matrix(dst, src) @ grid @ bicubic_matrix(dst + 2, src + 1).t()
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    # DINO's rule: sampling by the scale factor (g + 0.1) / src
    expected = F.interpolate(grid, scale_factor=((dst + 0.1) / src, (dst + 2.1) / (src + 1)), mode='bicubic',
                             align_corners=False)
    got = (bicubic_matrix(dst, src, torch.tensor(src / (dst + 0.1)))
           @ grid @ bicubic_matrix(dst + 2, src + 1, torch.tensor((src + 1) / (dst + 2.1))).t())
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_repeated_max_pool_is_repeated_pooling():
    for h, w in ((1, 1), (2, 9), (7, 30), (33, 16)):
        x = torch.randn(2, 3, h, w)
        expected = x
        for times in range(5):
            torch.testing.assert_close(repeated_max_pool(x, torch.tensor(times), 6), expected, rtol=0, atol=0)
            expected = F.max_pool2d(expected, 3, 2, 1)


def test_exportable_adaptive_pool_equals_pytorch():
    pool = nn.Sequential(nn.AdaptiveAvgPool2d(3), nn.AdaptiveAvgPool2d(1))
    x = torch.randn(2, 4, 13, 7)
    with exportable_modules(pool):
        assert isinstance(pool[0], ExportableAdaptiveAvgPool2d) and isinstance(pool[1], nn.AdaptiveAvgPool2d)
        swapped = pool[0](x)
    assert type(pool[0]) is nn.AdaptiveAvgPool2d  # put back
    torch.testing.assert_close(swapped, F.adaptive_avg_pool2d(x, 3))
