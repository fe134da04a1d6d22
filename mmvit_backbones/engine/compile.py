"""The torch.compile setting that training with dynamic shapes needs (torch 2.13).

``torch.compile(model, dynamic=True)`` of a *training* step (forward + backward) fails for these backbones inside
inductor: the partitioner of the joint graph saves some views for backward (a token map ``tokens.transpose(1, 2)
.reshape(B, C, H, W)``, a ``permute`` of an NHWC map), and inductor then orders their symbolic strides with plain
sympy comparisons that cannot be decided when a grid size such as ``W // 16`` might be 1 (``TypeError: cannot
determine truth value of Relational: C*((W//16)) < C``; pytorch/pytorch#185510, open). Inference graphs save
nothing and compile as they are; static shapes (``dynamic=False``/``None``) compile too.

:func:`enable_dynamic_shape_training` sets ``torch._functorch.config.recompute_views``: the partitioner then never
saves a view but recomputes it in backward from its base (views are free, and torch's own comment on the flag calls
it "generally a good idea"), which avoids the failing stride ordering. It is a process-wide torch setting, so the
package does not set it on import: ``tools/train.py`` calls it when the config asks for ``compile``, and
``tools/benchmark.py --compile`` does. Call it yourself before compiling a training step with dynamic shapes in
your own code.
"""
import torch._functorch.config as functorch_config


def enable_dynamic_shape_training() -> None:
    """Let ``torch.compile(..., dynamic=True)`` compile training steps of the backbones (module docstring)."""
    functorch_config.recompute_views = True
