#!/usr/bin/env python
"""Convert an official ImageNet checkpoint into this project's key layout (offline; init_cfg also converts on load).

    python tools/convert_checkpoint.py PyramidTNT ptnt-s-82.0.pth.tar checkpoints/pyramidtnt_s.pth [--arch s]

The input may be a flat state dict or wrapped (``model``/``state_dict``/``state_dict_ema``/``teacher``) with
``module.``/``backbone.`` prefixes. With ``--arch`` the result is also loaded into that backbone to check it (and
resolution-dependent tensors are resized to the model's pretraining size), printing the load report. The output is a
plain ``{name: tensor}`` file (loads with ``torch.load(weights_only=True)``); ``--prefix backbone.`` writes keys ready
for a detector's ``load_from``.
"""
import argparse
import os
import os.path as osp

import _bootstrap  # noqa: F401
import torch

import mmvit_backbones
from mmvit_backbones.checkpoint import extract_state_dict, load_pretrained, read_checkpoint
from mmvit_backbones.registry import MODELS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('backbone', choices=[n for n in mmvit_backbones.__all__ if n in MODELS.module_dict],
                        help='backbone type')
    parser.add_argument('src', help='official checkpoint')
    parser.add_argument('dst', help='output file')
    parser.add_argument('--arch', help='variant to verify the conversion against (e.g. s)')
    parser.add_argument('--prefix', default='', help='prefix for the written keys, e.g. backbone.')
    args = parser.parse_args()

    cls = MODELS.get(args.backbone)
    state = cls.convert_checkpoint(extract_state_dict(read_checkpoint(args.src, cls.weights_hint)))
    if args.arch:
        model = cls(arch=args.arch)
        load_pretrained(model, state, logger='current')
        # write the model's own tensors: resized to its pretraining size, without keys it does not have
        state = {k: v for k, v in model.state_dict().items()
                 if not k.startswith(tuple(model.new_param_prefixes))}
    os.makedirs(osp.dirname(osp.abspath(args.dst)), exist_ok=True)
    torch.save({args.prefix + k: v.contiguous() for k, v in state.items()}, args.dst)
    print(f'wrote {len(state)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
