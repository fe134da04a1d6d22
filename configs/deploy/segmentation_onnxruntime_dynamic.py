# mmdeploy deploy config: semantic segmentation (UPerNet) -> ONNX Runtime, dynamic batch/height/width.
# The graph takes the preprocessed image and returns `output` (B, classes, H, W): the logits at the input size.
# Outside the graph (mmvit_backbones.deploy.mmdeploy_compat) they are resized to the image and argmaxed in mmseg's
# order, so that the class map is mmseg's. Whole-image inference only: a config with test_cfg mode='slide' deploys as
# whole-image inference (tools/deploy.py compares it with PyTorch in whole mode and says so).
custom_imports = dict(imports=['mmvit_backbones', 'mmvit_backbones.deploy.mmdeploy_compat'],
                      allow_failed_imports=False)
backend_config = dict(type='onnxruntime')
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=13,  # the lowest opset whose Clip/Resize take every tensor these graphs compute
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['output'],
    input_shape=None,
    optimize=True,
    dynamic_axes={
        'input': {0: 'batch', 2: 'height', 3: 'width'},
        'output': {0: 'batch', 2: 'height', 3: 'width'},
    })
codebase_config = dict(type='mmseg', task='Segmentation', with_argmax=False)
