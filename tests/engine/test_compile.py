"""torch.compile(dynamic=True) of a training step (engine/compile.py): inductor compiles it and the gradients are
eager's."""
import torch
import torch._functorch.config as functorch_config

from mmvit_backbones.engine import enable_dynamic_shape_training
from mmvit_backbones.models import PlainViT


def _gradients(run, model, x):
    model.zero_grad()
    outs = run(x)
    torch.autograd.backward(outs, [torch.full_like(o, 1.0 / o.numel()) for o in outs])
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def test_dynamic_shape_training_step_compiles_with_eager_gradients(monkeypatch):
    # the smallest backbone with the saved token-map view that inductor cannot order without the setting
    monkeypatch.setattr(functorch_config, 'recompute_views', functorch_config.recompute_views)  # restored after
    enable_dynamic_shape_training()
    torch._dynamo.reset()
    torch.manual_seed(0)
    model = PlainViT(arch=dict(embed_dims=32, depth=1, num_heads=1), pretrain_img_size=64).train()
    compiled = torch.compile(model, dynamic=True)
    try:
        for size in [(96, 128), (80, 112)]:  # the second size reuses the dynamic graph or compiles another
            x = torch.randn(1, 3, *size)
            got, expected = _gradients(compiled, model, x), _gradients(model, model, x)
            assert got.keys() == expected.keys()
            for name in expected:
                torch.testing.assert_close(got[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
    finally:
        torch._dynamo.reset()
