# iBOT's plain-ViT detection optimiser on the 1x schedule (bytedance/ibot @da316d8: evaluation/object_detection/
# mmcv_custom/layer_decay_optimizer_constructor.py, and the published ViT-S/16 run of evaluation/README.md:73-77):
# AdamW 1e-4, wd 0.05, layer-wise lr decay 0.8 (blocks counted as BEiT/iBOT: stem and position table at depth 0,
# block i at i + 1, the rest after the last block), biases and norms exempt from decay; 12 epochs, steps at 8/11,
# warm-up 500. iBOT meant to exempt pos_embed and cls_token too (its name test never matches `backbone.pos_embed`, so
# they were decayed there): exempt here. Backbones with other position-table names add them to `custom_keys`.
_base_ = ['./adamw_1x.py']
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    paramwise_cfg=dict(
        layer_decay_rate=0.8,
        bias_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))
