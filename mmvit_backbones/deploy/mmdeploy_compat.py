"""Make mmdeploy 1.3.1 export this package's models with torch 2.13, without editing mmdeploy's files.

Importing this module applies the fixes below once (:func:`apply`). The project's deploy configs
(``configs/deploy/*.py``) list it in ``custom_imports``, so every process that loads one of them is fixed:
``tools/deploy.py`` of this project, and mmdeploy's own ``tools/deploy.py`` / ``tools/test.py``, whose export and
visualisation subprocesses reload the deploy config by path. ``import mmvit_backbones`` never imports it: the fixes
change how torch and mmdeploy behave, which only a deployment should do.

What is fixed (error -> cause -> fix):

1. ``torch.onnx.export`` defaults to ``dynamo=True`` in torch 2.13, whose ``torch.export`` front end rejects
   mmdeploy's ``dynamic_axes`` ("mismatch between the structure of inputs and dynamic_shapes") and ignores its
   function rewriters and symbolics, which need the TorchScript exporter. Calls *from mmdeploy* get
   ``dynamo=False``, and ``do_constant_folding=False``: folding would store, per attention block, the product of
   a parameter and a fixed index (GC ViT's relative-position bias gathered from its table) instead of the
   parameter, several times the weights' size; ONNX Runtime folds the same subgraphs in memory when it loads the
   file. Equal-valued parameters stay separate initializers (``mmvit_backbones.export.initializers_kept_apart``:
   torch's merging pass breaks unfolded graphs). Every other caller of ``torch.onnx.export`` keeps torch's defaults.
2. ``torch.onnx.symbolic_opset9._cast_Long`` is gone; mmdeploy's RoIAlign symbolic (two-stage detectors) imports
   it. Put back as a Cast to int64.
3. mmdeploy's ``CascadeRoIHead.predict_bbox`` rewrite asserts class-agnostic box regression (a bare
   ``AssertionError``); the shipped Cascade Mask R-CNN configs regress per class. Replaced for ONNX Runtime by a
   rewrite that refines each stage's RoIs with the deltas of the arg-max class, as mmdet's ``_refine_roi`` does.
   Its ``predict_mask`` averages the stages' mask *logits*; mmdet averages their sigmoids: replaced likewise, the
   mean probabilities leaving the graph as they are.
4. mmdeploy turns ``F.adaptive_avg_pool2d`` (UPerNet's pyramid pooling) into an ``avg_pool2d`` whose kernel comes
   from the export size: wrong at every other size of a dynamic model ("stride should not be zero" on small
   inputs). Replaced for ONNX Runtime by PyTorch's adaptive bins computed from the run-time size.

5. mmdeploy's ONNX Runtime segmentation model takes the argmax at the network's input size, then resizes the
   class map to the image (nearest); mmseg resizes the logits (bilinear), then takes the argmax, so the two maps
   differ along every boundary of a resized image. With ``with_argmax=False`` (the project's deploy config: the graph
   returns logits) its ``pack_result`` is replaced by mmseg's order.

6. mmdeploy's ``RPNHead.predict_by_feat`` rewrite is not mmdet's proposal step: it runs one NMS over the boxes of
   all levels (mmdet's ``batched_nms`` suppresses within a level only), drops proposals below the deploy config's
   ``score_threshold`` (mmdet's RPN has none), keeps boxes of zero width or height (mmdet drops those not larger
   than ``min_bbox_size``) and appends an all-zero proposal, which the RoI head then classifies. The proposals differ,
   and with them the detections of a trained Mask R-CNN. Replaced for ONNX Runtime by mmdet's step: one NMS class
   per level, no score threshold, the small boxes and the padding dropped.

7. mmdeploy's ``BBoxHead.predict_by_feat`` rewrite (R-CNN detections) keeps, for each RoI, only the box regressed
   for its highest-scoring class and scores every class with that one box; mmdet scores each class with the box
   regressed for that class. Wherever a RoI's second class scores above the threshold, the two detect different
   boxes. Its per-class NMS also keeps at most the deploy config's ``max_output_boxes_per_class`` per class.
   Replaced for ONNX Runtime by mmdet's step: every (RoI, class) pair above ``score_thr`` with its own box, one NMS
   over all of them with the boxes of class c shifted by c times the largest coordinate plus one (mmcv's
   ``batched_nms``), the ``max_per_img`` best kept.

8. mmdeploy's graph takes the batch as mmdet's ``DetDataPreprocessor`` left it, padded to ``pad_size_divisor``, and
   reads the image size from the tensor: proposals and boxes are clipped to the padded size, where mmdet clips
   them to the image. Wherever the resized image is not a multiple of the divisor, the detections near its right
   and bottom edges differ. For ONNX Runtime the detectors pad inside the graph instead (same divisor, same value),
   and the runtime model's data preprocessor no longer pads: the graph sees the image size and clips as mmdet does.

Rewriters registered for ``backend='onnxruntime'`` take precedence over mmdeploy's backend-independent ones and do
not affect other backends.
"""
import functools
import sys
from typing import List, Sequence, Tuple

import torch
from torch import Tensor

from ..export import adaptive_avg_pool2d_traceable, initializers_kept_apart

_APPLIED = False


def _called_from_mmdeploy() -> bool:
    caller = sys._getframe(2).f_globals.get('__name__', '')  # 0: this function, 1: the wrapper, 2: its caller
    return caller == 'mmdeploy' or caller.startswith('mmdeploy.')


def _patch_onnx_export() -> None:
    export = torch.onnx.export

    @functools.wraps(export)
    def export_for_mmdeploy(*args, **kwargs):
        if not _called_from_mmdeploy():
            return export(*args, **kwargs)
        kwargs.setdefault('dynamo', False)
        kwargs.setdefault('do_constant_folding', False)
        with initializers_kept_apart():
            return export(*args, **kwargs)

    torch.onnx.export = export_for_mmdeploy


def _restore_cast_long() -> None:
    import torch.onnx.symbolic_opset9 as opset9
    if not hasattr(opset9, '_cast_Long'):
        opset9._cast_Long = lambda g, value, non_blocking=False: g.op('Cast', value, to_i=7)  # 7: TensorProto.INT64


def _regress_by_class(head, rois: Tensor, cls_score: Tensor, bbox_pred: Tensor, img_shape) -> Tensor:
    """(B, N, 5) RoIs of one stage -> the next stage's (B, N, 4) boxes (mmdet's ``BBoxHead.regress_by_class``)."""
    if head.custom_activation:
        cls_score = head.loss_cls.get_activation(cls_score)
    if not head.reg_class_agnostic:  # the deltas of the arg-max foreground class
        b, n = bbox_pred.shape[:2]
        code = head.bbox_coder.encode_size
        label = cls_score[..., :-1].argmax(-1)[..., None, None].expand(b, n, 1, code)
        bbox_pred = bbox_pred.reshape(b, n, -1, code).gather(2, label).squeeze(2)
    from mmdet.structures.bbox import get_box_tensor
    return get_box_tensor(head.bbox_coder.decode(rois[..., 1:], bbox_pred, max_shape=img_shape))


def cascade_predict_bbox(self, x: Tuple[Tensor], batch_img_metas: List[dict], rpn_results_list: List[Tensor],
                         rcnn_test_cfg, rescale: bool = False, **kwargs) -> List[Tensor]:
    """``CascadeRoIHead.predict_bbox`` on batched proposals (B, N, 5): stage-averaged scores, class-aware
    refinement between stages."""
    proposals = rpn_results_list[0]
    b, n = proposals.shape[:2]
    image_index = torch.arange(b, device=proposals.device, dtype=proposals.dtype).view(b, 1, 1).expand(b, n, 1)
    rois = torch.cat([image_index, proposals[..., :4]], dim=-1)  # (B, N, 5)
    stage_scores = []
    for stage in range(self.num_stages):
        result = self._bbox_forward(stage, x, rois.reshape(b * n, 5), **kwargs)
        cls_score = result['cls_score'].reshape(b, n, -1)
        bbox_pred = result['bbox_pred'].reshape(b, n, -1)
        stage_scores.append(cls_score)
        if stage < self.num_stages - 1:
            boxes = _regress_by_class(self.bbox_head[stage], rois, cls_score, bbox_pred,
                                      batch_img_metas[0]['img_shape'])
            rois = torch.cat([image_index, boxes], dim=-1)
    return self.bbox_head[-1].predict_by_feat(
        rois=rois, cls_scores=sum(stage_scores) / len(stage_scores), bbox_preds=bbox_pred,
        batch_img_metas=batch_img_metas, rcnn_test_cfg=rcnn_test_cfg, rescale=rescale)


def cascade_predict_mask(self, x: Tuple[Tensor], batch_img_metas: List[dict], results_list: Sequence[Tensor],
                         rescale: bool = False) -> Tuple[Tensor, Tensor, Tensor]:
    """``CascadeRoIHead.predict_mask``: the mean of the stages' mask probabilities (mmdet's ``merge_aug_masks``), the
    channel of each detection's label (B, N, 28, 28), pasted into the image outside the graph. With the deploy
    config's ``export_postprocess_mask`` the last mask head pastes them in the graph, from the logit of the mean (it
    applies the sigmoid): a round trip that can flip pixels whose probability is within rounding of the threshold."""
    from mmdeploy.codebase.mmdet.deploy import get_post_processing_params
    from mmdeploy.core import FUNCTION_REWRITER
    dets, labels = results_list
    b, n = dets.shape[:2]
    image_index = torch.arange(b, device=dets.device, dtype=dets.dtype).view(b, 1, 1).expand(b, n, 1)
    mask_rois = torch.cat([image_index, dets[..., :4]], dim=-1).reshape(b * n, 5)
    probabilities = [self._mask_forward(stage, x, mask_rois)['mask_preds'].sigmoid()
                     for stage in range(self.num_stages)]
    mean = sum(probabilities) / len(probabilities)  # (B * N, classes or 1, 28, 28)
    head = self.mask_head[-1]
    if get_post_processing_params(FUNCTION_REWRITER.get_context().cfg).get('export_postprocess_mask', False):
        masks = head.predict_by_feat(torch.logit(mean), results_list, batch_img_metas, self.test_cfg, rescale=rescale)
    elif head.class_agnostic:
        masks = mean[:, 0]
    else:  # padding rows have label -1: any channel, the rows are dropped
        masks = mean[torch.arange(b * n, device=mean.device), labels.reshape(-1)]
    return dets, labels, masks.reshape(b, n, masks.shape[-2], masks.shape[-1])


def rpn_predict_by_feat(self, cls_scores: List[Tensor], bbox_preds: List[Tensor], score_factors=None,
                        batch_img_metas: List[dict] = None, cfg=None, rescale: bool = False, with_nms: bool = True,
                        **kwargs) -> Tuple[Tensor, Tensor]:
    """mmdet's RPN proposals in a traceable form: per level the ``nms_pre`` best anchors, decoded and clipped to the
    image, those not larger than ``min_bbox_size`` dropped, NMS within each level, the ``max_per_img`` best kept.
    Returns ``(dets, labels)`` of shape (B, N, 5) and (B, N), as mmdeploy's two-stage rewrite expects."""
    import torch.nn.functional as F
    from mmdeploy.codebase.mmdet.deploy import gather_topk, pad_with_value_if_necessary
    from mmdeploy.mmcv.ops.nms import ONNXNMSop, _select_nms_index
    cfg = self.test_cfg if cfg is None else cfg
    batch_size, num_levels = cls_scores[0].shape[0], len(cls_scores)
    level_anchors = self.anchor_generator.grid_anchors([s.shape[-2:] for s in cls_scores], device=cls_scores[0].device)
    nms_pre, min_size = cfg.get('nms_pre', -1), cfg.get('min_bbox_size', -1)
    level_boxes, level_scores = [], []
    for cls_score, bbox_pred, anchors in zip(cls_scores, bbox_preds, level_anchors):
        cls_score = cls_score.permute(0, 2, 3, 1)
        if self.use_sigmoid_cls:
            scores = cls_score.reshape(batch_size, -1).sigmoid()
        else:  # foreground is class 0 of the two
            scores = cls_score.reshape(batch_size, -1, 2).softmax(-1)[..., 0]
        scores = scores.unsqueeze(-1)
        deltas = bbox_pred.permute(0, 2, 3, 1).reshape(batch_size, -1, self.bbox_coder.encode_size)
        anchors = anchors.unsqueeze(0)
        if nms_pre > 0:  # padded with zero scores to nms_pre candidates; NMS drops zero scores
            scores = pad_with_value_if_necessary(scores, 1, nms_pre, 0.)
            deltas = pad_with_value_if_necessary(deltas, 1, nms_pre)
            anchors = pad_with_value_if_necessary(anchors, 1, nms_pre)
            _, top = scores.squeeze(2).topk(nms_pre)
            deltas, scores = gather_topk(deltas, scores, inds=top, batch_size=batch_size, is_batched=True)
            anchors = gather_topk(anchors, inds=top, batch_size=batch_size, is_batched=False)
        boxes = self.bbox_coder.decode(anchors, deltas, max_shape=batch_img_metas[0]['img_shape'])
        if min_size >= 0:
            large = (boxes[..., 2] - boxes[..., 0] > min_size) & (boxes[..., 3] - boxes[..., 1] > min_size)
            scores = scores * large.unsqueeze(-1).to(scores.dtype)
        level_boxes.append(boxes)
        level_scores.append(scores)
    boxes = torch.cat(level_boxes, dim=1)
    # one NMS class per level (column l holds the scores of level l's boxes, zero elsewhere): mmdet's batched_nms
    scores = torch.cat([F.pad(s, (i, num_levels - 1 - i)) for i, s in enumerate(level_scores)], dim=1)
    scores = scores.permute(0, 2, 1)
    max_per_img = cfg.get('max_per_img', 1000)
    iou = torch.tensor([cfg.nms.get('iou_threshold', 0.7)], dtype=torch.float32)
    selected = ONNXNMSop.apply(boxes, scores, max_per_img, iou, torch.tensor([0.0]))
    dets, labels = _select_nms_index(scores, boxes, selected, batch_size, keep_top_k=max_per_img)
    # zero-score rows: the one _select_nms_index appends, and the padding of images with fewer proposals than
    # another image of the batch; rows empty in every image go (for one image: exactly mmdet's proposals)
    kept = (dets[..., 4] > 0).any(dim=0)
    return dets[:, kept], labels[:, kept]


def bbox_head_predict_by_feat(self, rois: Tensor, cls_scores: Tensor, bbox_preds: Tensor, batch_img_metas: List[dict],
                              rcnn_test_cfg=None, rescale: bool = False) -> Tuple[Tensor, Tensor]:
    """mmdet's R-CNN detection step (``BBoxHead.predict_by_feat`` + ``multiclass_nms``) on batched RoIs (B, N, 5):
    each class with its own regressed box. Returns ``(dets, labels)`` of shape (B, K, 5) and (B, K), as mmdeploy's
    two-stage rewrite expects; rows with score 0 are padding."""
    from mmdeploy.mmcv.ops.nms import ONNXNMSop, _select_nms_index
    from mmdet.structures.bbox import get_box_tensor
    scores = self.loss_cls.get_activation(cls_scores) if self.custom_cls_channels else cls_scores.softmax(-1)
    scores = scores[..., :self.num_classes]  # (B, N, C) without the background
    boxes = get_box_tensor(self.bbox_coder.decode(rois[..., 1:], bbox_preds,
                                                  max_shape=batch_img_metas[0]['img_shape']))
    b, n, code = boxes.shape[0], boxes.shape[1], self.bbox_coder.encode_size
    if self.reg_class_agnostic:
        boxes = boxes.unsqueeze(2).expand(b, n, self.num_classes, code)
    boxes = boxes.reshape(b, -1, code)  # (B, N * C, 4): RoI-major, class-minor, as mmdet flattens them
    labels = torch.arange(self.num_classes, device=scores.device).expand_as(scores).reshape(b, -1)
    threshold = float(rcnn_test_cfg.get('score_thr', 0.0))
    scores = scores.reshape(b, 1, -1)
    candidate = scores > threshold
    scores = scores * candidate.to(scores.dtype)  # the threshold applied here, whichever way NMS compares
    # mmcv's batched_nms: class c's boxes shifted by c * (largest candidate coordinate + 1), one NMS for all
    largest = torch.where(candidate.transpose(1, 2), boxes, torch.zeros_like(boxes)).reshape(b, -1).max(dim=1)[0]
    shifted = boxes + (labels.to(boxes.dtype) * (largest.unsqueeze(1) + 1)).unsqueeze(-1)
    max_per_img = rcnn_test_cfg.get('max_per_img', 100)
    iou = torch.tensor([rcnn_test_cfg.nms.get('iou_threshold', 0.5)], dtype=torch.float32)
    selected = ONNXNMSop.apply(shifted, scores, max_per_img, iou, torch.tensor([threshold]))
    # mmdeploy's per-image gathering, best first; the class of each kept pair rides along as its "index"
    dets, _, det_labels = _select_nms_index(scores, boxes, selected, b, keep_top_k=max_per_img, pre_inds=labels,
                                            output_index=True)
    return dets, det_labels


def extract_feat_of_padded(self, batch_inputs: Tensor):
    """``extract_feat`` of a detector on its input padded as its ``DetDataPreprocessor`` pads (to
    ``pad_size_divisor``, with ``pad_value``): the runtime feeds the unpadded image, so the image size the graph
    reads from its input is the image's."""
    import torch.nn.functional as F
    from mmdeploy.core import FUNCTION_REWRITER

    from ..models.layers.traceable import pad_to_multiple
    preprocessor = self.data_preprocessor
    divisor = int(getattr(preprocessor, 'pad_size_divisor', 1) or 1)
    if divisor > 1:
        h, w = batch_inputs.shape[-2:]
        batch_inputs = F.pad(batch_inputs, (0, pad_to_multiple(w, divisor), 0, pad_to_multiple(h, divisor)),
                             value=float(getattr(preprocessor, 'pad_value', 0)))
    return FUNCTION_REWRITER.get_context().origin_func(self, batch_inputs)


def _unpadded_runtime_input(original):
    """``ObjectDetection.build_backend_model``: for ONNX Runtime the data preprocessor does not pad (the graph does)."""
    @functools.wraps(original)
    def build_backend_model(self, model_files=None, data_preprocessor_updater=None, **kwargs):
        from mmdeploy.utils import Backend, get_backend
        if get_backend(self.deploy_cfg) != Backend.ONNXRUNTIME:
            return original(self, model_files, data_preprocessor_updater, **kwargs)

        def unpadded(data_preprocessor):
            if data_preprocessor_updater is not None:
                data_preprocessor = data_preprocessor_updater(data_preprocessor)
            data_preprocessor['pad_size_divisor'] = 1
            return data_preprocessor
        return original(self, model_files, unpadded, **kwargs)
    return build_backend_model


def adaptive_avg_pool2d(input: Tensor, output_size) -> Tensor:
    """``F.adaptive_avg_pool2d`` with the bins computed from the run-time size (to 1x1: ONNX GlobalAveragePool)."""
    from mmdeploy.core import FUNCTION_REWRITER
    if output_size in (1, (1, 1)):
        return FUNCTION_REWRITER.get_context().origin_func(input, output_size)
    return adaptive_avg_pool2d_traceable(input, output_size)


def _pack_segmentation_like_mmseg(original):
    """mmdeploy's ``End2EndModel.pack_result`` (mmseg) -> mmseg's ``postprocess_result`` order for logit outputs."""
    @functools.wraps(original)
    def pack_result(self, batch_outputs: Tensor, data_samples: list) -> list:
        from mmdeploy.utils import get_codebase_config
        if get_codebase_config(self.deploy_cfg).get('with_argmax', True) or batch_outputs.shape[1] == 1:
            return original(self, batch_outputs, data_samples)
        import torch.nn.functional as F
        from mmengine.structures import PixelData
        for logits, sample in zip(batch_outputs, data_samples):
            height, width = sample.metainfo['img_shape'][:2]
            logits = logits[:, :height, :width]  # drop batch padding
            if tuple(sample.metainfo['ori_shape'][:2]) != (height, width):
                # UPerNet's decode heads use align_corners=False, as mmseg's resize here
                logits = F.interpolate(logits[None], size=sample.metainfo['ori_shape'][:2], mode='bilinear',
                                       align_corners=False)[0]
            sample.set_data(dict(seg_logits=PixelData(data=logits),
                                 pred_sem_seg=PixelData(data=logits.argmax(dim=0, keepdim=True))))
        return data_samples
    return pack_result


def _register_rewriters() -> None:
    from mmdeploy.core import FUNCTION_REWRITER
    head = 'mmdet.models.roi_heads.cascade_roi_head.CascadeRoIHead.'
    FUNCTION_REWRITER.register_rewriter(head + 'predict_bbox', backend='onnxruntime')(cascade_predict_bbox)
    FUNCTION_REWRITER.register_rewriter(head + 'predict_mask', backend='onnxruntime')(cascade_predict_mask)
    FUNCTION_REWRITER.register_rewriter('mmdet.models.dense_heads.rpn_head.RPNHead.predict_by_feat',
                                        backend='onnxruntime')(rpn_predict_by_feat)
    FUNCTION_REWRITER.register_rewriter('mmdet.models.roi_heads.bbox_heads.bbox_head.BBoxHead.predict_by_feat',
                                        backend='onnxruntime')(bbox_head_predict_by_feat)
    for detector in ('single_stage.SingleStageDetector', 'two_stage.TwoStageDetector'):
        FUNCTION_REWRITER.register_rewriter(f'mmdet.models.detectors.{detector}.extract_feat',
                                            backend='onnxruntime')(extract_feat_of_padded)
    FUNCTION_REWRITER.register_rewriter('torch.nn.functional.adaptive_avg_pool2d',
                                        backend='onnxruntime')(adaptive_avg_pool2d)


def apply() -> None:
    """Apply the fixes once per process (needs mmdeploy, mmdet and onnx installed: ``pip install .[deploy]``)."""
    global _APPLIED
    if _APPLIED:
        return
    try:
        import mmdeploy.core  # noqa: F401
    except ImportError as err:
        raise ImportError(f'mmdeploy is not installed ({err}); install it with `pip install -e .[deploy]` and '
                          '`pip install --no-deps mmdeploy==1.3.1`') from err
    # mmdeploy's rewriter context pops the list torch.fx.wrap registers into, a dict in torch 2.13 (KeyError: -1)
    # when a module calling torch.fx.wrap is first imported inside the context: import mmengine.model now
    import mmengine.model  # noqa: F401
    _patch_onnx_export()
    _restore_cast_long()
    _register_rewriters()
    from mmdeploy.codebase.mmseg.deploy.segmentation_model import End2EndModel
    End2EndModel.pack_result = _pack_segmentation_like_mmseg(End2EndModel.pack_result)
    from mmdeploy.codebase.mmdet.deploy.object_detection import ObjectDetection
    ObjectDetection.build_backend_model = _unpadded_runtime_input(ObjectDetection.build_backend_model)
    _APPLIED = True


apply()
