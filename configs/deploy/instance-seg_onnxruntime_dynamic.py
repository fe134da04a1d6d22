# mmdeploy deploy config: two-stage instance segmentation (Mask R-CNN, Cascade Mask R-CNN) -> ONNX Runtime, dynamic
# batch/height/width. The graph returns `dets` (B, N, 5), `labels` (B, N) and `masks` (B, N, 28, 28: the mask head's
# probabilities per box; pasting them into the image is done outside the graph, export_postprocess_mask=False).
custom_imports = dict(imports=['mmvit_backbones', 'mmvit_backbones.deploy.mmdeploy_compat'],
                      allow_failed_imports=False)
backend_config = dict(type='onnxruntime')
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    # 16: RoiAlign-16 has mmcv's aligned (half-pixel) sampling; below 16 mmdeploy emulates it by shifting the RoIs,
    # which differs from mmcv on RoIs smaller than one feature pixel
    opset_version=16,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels', 'masks'],
    input_shape=None,
    optimize=True,
    dynamic_axes={
        'input': {0: 'batch', 2: 'height', 3: 'width'},
        'dets': {0: 'batch', 1: 'num_dets'},
        'labels': {0: 'batch', 1: 'num_dets'},
        'masks': {0: 'batch', 1: 'num_dets', 2: 'height', 3: 'width'},
    })
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',  # mmdeploy's mmdet task for detectors with and without masks
    model_type='end2end',
    # score threshold, NMS IoU and detections per image come from the model's test_cfg (RPN and R-CNN); candidates
    # before NMS: 5 FPN levels x nms_pre 1000, so nothing the model keeps is cut
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
        export_postprocess_mask=False,
    ))
