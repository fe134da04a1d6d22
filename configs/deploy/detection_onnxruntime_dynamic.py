# mmdeploy deploy config: one-stage detectors (RetinaNet) -> ONNX Runtime, dynamic batch/height/width.
# The graph takes the preprocessed image (normalised, padded) and returns `dets` (B, N, 5: x1 y1 x2 y2 score) and
# `labels` (B, N) after box decoding and NMS. Self-contained (mmdeploy's own configs are not in its wheel).
custom_imports = dict(imports=['mmvit_backbones', 'mmvit_backbones.deploy.mmdeploy_compat'],
                      allow_failed_imports=False)
backend_config = dict(type='onnxruntime')
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    # 13, not mmdeploy's 11: the lowest opset whose Clip/Resize take every tensor these graphs compute
    opset_version=13,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels'],
    input_shape=None,
    optimize=True,
    dynamic_axes={
        'input': {0: 'batch', 2: 'height', 3: 'width'},
        'dets': {0: 'batch', 1: 'num_dets'},
        'labels': {0: 'batch', 1: 'num_dets'},
    })
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    # mmdeploy takes the score threshold, NMS IoU and detections per image from the model's test_cfg; these are the
    # fallbacks and the two limits the model config has no setting for: candidates before NMS (5 FPN levels x
    # nms_pre 1000, so nothing the model keeps is cut) and boxes per class (the 100 kept per image always fit)
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
    ))
