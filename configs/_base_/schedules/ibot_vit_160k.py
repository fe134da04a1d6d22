# iBOT's plain-ViT UPerNet optimiser (bytedance/ibot @da316d8 evaluation/semantic_segmentation/configs/upernet/
# vit_small_512_ade20k_160k.py with evaluation/README.md:93-96: `optimizer.lr=3e-5`): AdamW 3e-5, wd 0.05,
# layer-wise lr decay 0.9, biases and norms exempt (pos_embed/cls_token too: see ibot_vit_1x.py); 160k iterations,
# linear warm-up 1500 from 1e-6, then poly decay (power 1.0) to 0, as adamw_160k.py.
_base_ = ['./adamw_160k.py']
optim_wrapper = dict(
    constructor='LayerwiseDecayOptimWrapperConstructor',
    optimizer=dict(lr=3e-05, weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.9,
        bias_decay_mult=0.0,
        custom_keys={'pos_embed': dict(decay_mult=0.0), 'cls_token': dict(decay_mult=0.0)}))
