"""torch.compile(dynamic=True) of a training step (engine/compile.py): inductor compiles it and the gradients are
eager's."""
import torch
import torch._functorch.config as functorch_config

from mmvit_backbones.engine import enable_dynamic_shape_training
from mmvit_backbones.models import PlainViT


def _gradients(run, model, x):
    model.zero_grad()
    outs = run(x)
    # random output gradients: the gradient of a mean through a final norm is zero in exact arithmetic
    torch.autograd.backward(outs, [torch.randn(o.shape, generator=torch.Generator().manual_seed(i))
                                   for i, o in enumerate(outs)])
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
            for name, ref in expected.items():  # float reordering only: ~1e-7 of each gradient's scale here
                diff = float((got[name] - ref).abs().max())
                assert diff <= 1e-5 * float(ref.abs().max()) + 1e-7, (name, diff, float(ref.abs().max()))
    finally:
        torch._dynamo.reset()
