"""Reusable checks for backbone tests (every backbone's test module runs the same contract)."""
import copy
import math
import os
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

STRIDES = (4, 8, 16, 32)
# sizes every backbone must accept: tiny, odd, non-square, detection-sized
ODD_SIZES = ((33, 33), (112, 137), (64, 96))
LARGE_SIZES = ((511, 513), (800, 1333))


def pyramid_shapes(model: nn.Module, h: int, w: int) -> Tuple[Tuple[int, ...], ...]:
    """Expected (C, H, W) of each output: level i has ``ceil(size / stride_i)`` cells."""
    return tuple((model.out_channels[i], math.ceil(h / STRIDES[i]), math.ceil(w / STRIDES[i]))
                 for i in model.out_indices)


def assert_pyramid(model: nn.Module, sizes: Iterable[Tuple[int, int]], batch: int = 1) -> None:
    model.eval()
    with torch.no_grad():
        for h, w in sizes:
            outs = model(torch.randn(batch, model.in_channels, h, w))
            assert isinstance(outs, tuple), type(outs)
            got = tuple(tuple(o.shape[1:]) for o in outs)
            assert got == pyramid_shapes(model, h, w), f'input {h}x{w}: got {got}, want {pyramid_shapes(model, h, w)}'
            assert all(o.shape[0] == batch and torch.isfinite(o).all() for o in outs)


def assert_parity(fixture: dict, skipped: Sequence[str] = ('logits', ),
                  ok: Optional[Sequence[str]] = None) -> nn.Module:
    """Run the fixture's parity check and require its verdict: every output of ``fixture['outputs']`` reported,
    each ``'ok'`` except exactly the ``skipped`` ones (classifier outputs the backbone drops); with ``ok``, the
    fixture's outputs must be exactly ``ok`` + ``skipped``. Returns the model, with the fixture's weights loaded."""
    from mmvit_backbones.testing.parity import run_parity
    results, model = run_parity(fixture)
    lines = '\n'.join(r.line() for r in results)
    assert [r.name for r in results] == list(fixture['outputs']), lines
    assert set(skipped) <= set(fixture['outputs']), (sorted(skipped), list(fixture['outputs']))
    if ok is not None:
        assert set(fixture['outputs']) == set(ok) | set(skipped), (list(fixture['outputs']), ok, skipped)
    expected = {r.name: 'skipped' if r.name in skipped else 'ok' for r in results}
    assert {r.name: r.status for r in results} == expected, lines
    return model


def spy_calls(monkeypatch, name: str, *modules, record: Callable = lambda *args, **kwargs: args) -> List:
    """Wrap the function ``name`` of each module (for the test's duration): every call appends
    ``record(*args, **kwargs)`` to the returned list, then runs the module's original function."""
    calls = []

    def wrap(original):
        def spy(*args, **kwargs):
            calls.append(record(*args, **kwargs))
            return original(*args, **kwargs)
        return spy

    for module in modules:
        monkeypatch.setattr(module, name, wrap(getattr(module, name)))
    return calls


def assert_naive_attention_matches(model: nn.Module, x: torch.Tensor, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """The model's outputs under :func:`naive_attention_mode` (textbook attention) equal the fused ones."""
    from mmvit_backbones.models.layers import naive_attention_mode
    with torch.no_grad():
        fused = model(x)
        with naive_attention_mode():
            naive = model(x)
    assert len(fused) == len(naive)
    for a, b in zip(fused, naive):
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)


def assert_same_gradients(model: nn.Module, reference: nn.Module, x: torch.Tensor, rtol: float,
                          atol: float) -> None:
    """One training step of ``model`` and of ``reference`` (same weights, e.g. with plain aten convolutions) on ``x``
    with the same random output gradients gives every parameter the same gradient (or none in both)."""
    outs, ref_outs = model(x), reference(x)
    grads = [torch.randn_like(o) for o in ref_outs]
    torch.autograd.backward(outs, grads)
    torch.autograd.backward(ref_outs, grads)
    for (name, p), ref in zip(model.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (ref.grad is None), name
        if ref.grad is not None:
            torch.testing.assert_close(p.grad, ref.grad, rtol=rtol, atol=atol, msg=lambda m: f'{name}: {m}')


def assert_builds_from_both_registries(cfg: dict) -> None:
    from mmdet.registry import MODELS as MMDET_MODELS
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS as MMSEG_MODELS

    import mmvit_backbones  # noqa: F401  (what custom_imports does)
    for scope, registry in (('mmdet', MMDET_MODELS), ('mmseg', MMSEG_MODELS)):
        init_default_scope(scope)
        for type_name in (cfg['type'], f"mmvit_backbones.{cfg['type']}"):
            model = registry.build(dict(cfg, type=type_name))
            assert type(model).__name__ == cfg['type'], (scope, type_name, type(model))


def assert_frozen(build: Callable[..., nn.Module], frozen_stages: int) -> None:
    """``frozen_stages`` really freezes: no grad for frozen params, frozen BN/dropout in eval after ``train()``."""
    model = build(frozen_stages=frozen_stages)
    model.train()
    frozen = list(model.frozen_modules(frozen_stages))
    assert frozen, 'frozen_modules returned nothing'
    for module in frozen:
        params = [module] if isinstance(module, nn.Parameter) else list(module.parameters())
        assert params and not any(p.requires_grad for p in params)
        if isinstance(module, nn.Module):
            assert not any(m.training for m in module.modules())
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable, 'everything frozen'
    before = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    outs = model(torch.randn(2, model.in_channels, 64, 64))
    sum(o.float().mean() for o in outs).backward()
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert p.grad is None, n
            assert torch.equal(p, before[n]), n


def assert_norm_eval(build: Callable[..., nn.Module]) -> None:
    """``norm_eval`` keeps pretrained BatchNorms in eval mode after ``train()``; new parts' BNs still learn."""
    model = build(norm_eval=True)
    model.train()
    new_parts = tuple(model.new_param_prefixes)
    bns = [(n, m) for n, m in model.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    pretrained = [m for n, m in bns if not f'{n}.'.startswith(new_parts)]
    assert pretrained and not any(m.training for m in pretrained)
    assert all(m.training for n, m in bns if f'{n}.'.startswith(new_parts))


def assert_with_cp_equivalent(build: Callable[..., nn.Module], size: Tuple[int, int] = (64, 80)) -> None:
    """Activation checkpointing changes neither outputs nor gradients."""
    torch.manual_seed(0)
    plain = build(with_cp=False)
    checkpointed = build(with_cp=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, plain.in_channels, *size)
    results = []
    for model in (plain, checkpointed):
        model.train()
        _disable_dropout(model)
        inp = x.clone().requires_grad_(True)
        outs = model(inp)
        sum((o.float() ** 2).mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], inp.grad, {n: p.grad for n, p in model.named_parameters()}))
    (o1, gx1, g1), (o2, gx2, g2) = results
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx1, gx2, rtol=1e-4, atol=1e-6)
    for n in g1:
        if g1[n] is None:
            assert g2[n] is None, n
        else:
            torch.testing.assert_close(g1[n], g2[n], rtol=1e-4, atol=1e-6, msg=n)


def _disable_dropout(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Dropout) or type(m).__name__ == 'DropPath':
            m.eval()


def assert_checkpoint_forms(build: Callable[..., nn.Module], official: Dict[str, torch.Tensor], tmp_dir: str,
                            extra_wrappers: Sequence[str] = ()) -> None:
    """An official state dict loads through ``init_cfg`` flat, wrapped and prefixed, and gives the same weights."""
    reference = build()
    from mmvit_backbones.checkpoint import load_pretrained
    load_pretrained(reference, official)
    expected = reference.state_dict()
    forms = {
        'flat': official,
        'model': {'model': official, 'epoch': 3},
        'state_dict': {'state_dict': official},
        'state_dict_ema': {'state_dict': {k: torch.zeros_like(v) for k, v in official.items()},
                           'state_dict_ema': official},
        'module_prefix': {f'module.{k}': v for k, v in official.items()},
        'backbone_prefix': {'state_dict': {f'backbone.{k}': v for k, v in official.items()}},
    }
    for wrapper in extra_wrappers:
        forms[wrapper] = {wrapper: {f'backbone.{k}': v for k, v in official.items()}}
    for name, content in forms.items():
        path = os.path.join(tmp_dir, f'{name}.pth')
        torch.save(content, path)
        model = build(init_cfg=dict(type='Pretrained', checkpoint=path))
        model.init_weights()
        got = model.state_dict()
        for key, value in expected.items():
            assert torch.equal(got[key], value), f'{name}: {key} differs'


def assert_missing_checkpoint_error(build: Callable[..., nn.Module]) -> None:
    import pytest
    model = build(init_cfg=dict(type='Pretrained', checkpoint='/nonexistent/weights.pth'))
    with pytest.raises(FileNotFoundError, match='init_cfg=None'):
        model.init_weights()


def assert_foreign_checkpoint_error(build: Callable[..., nn.Module]) -> None:
    import pytest

    from mmvit_backbones.checkpoint import CheckpointError, load_pretrained
    foreign = {f'layer{i}.conv.weight': torch.zeros(8, 8, 3, 3) for i in range(20)}
    with pytest.raises(CheckpointError, match='does not look like'):
        load_pretrained(build(), foreign)


def assert_bad_inputs_rejected(build: Callable[..., nn.Module], bad_arch_kwargs: Sequence[dict] = ()) -> None:
    import pytest
    model = build().eval()
    with pytest.raises(ValueError, match='channels'):
        model(torch.randn(1, model.in_channels + 1, 64, 64))
    with pytest.raises(ValueError, match='smaller than the total stride'):
        model(torch.randn(1, model.in_channels, 16, 64))
    with pytest.raises(ValueError, match='unknown arch'):
        build(arch='no-such-arch')
    with pytest.raises(ValueError, match='out_indices'):
        build(out_indices=(0, 7))
    with pytest.raises(ValueError, match='frozen_stages'):
        build(frozen_stages=9)
    for kwargs in bad_arch_kwargs:
        with pytest.raises((ValueError, TypeError)):
            build(**kwargs)


def assert_layer_depths(model: nn.Module) -> None:
    """Every parameter gets a depth in [0, num_layers + 1], the stem 0, and depths grow along the network."""
    depths = [model.get_layer_depth(n)[0] for n, _ in model.named_parameters()]
    total = model.get_layer_depth('anything.else', prefix='backbone.')[1]
    assert total == model.num_layers + 2
    assert min(depths) == 0 and max(depths) <= total - 1
    assert model.get_layer_depth('neck.conv.weight', prefix='backbone.') == (total - 1, total)


def clone_build(factory: Callable[..., nn.Module], **base) -> Callable[..., nn.Module]:
    """A ``build(**overrides)`` closure over a factory with default kwargs."""
    def build(**overrides):
        kwargs = copy.deepcopy(base)
        kwargs.update(overrides)
        return factory(**kwargs)
    return build
