"""The comparison tools/deploy.py prints and exits on: matched detections, their boxes, scores and masks."""
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData

from mmvit_backbones.deploy.compare import compare_detections


def _result(boxes, scores, masks) -> DetDataSample:
    sample = DetDataSample()
    sample.pred_instances = InstanceData(bboxes=torch.tensor(boxes, dtype=torch.float32),
                                         scores=torch.tensor(scores), labels=torch.zeros(len(scores), dtype=torch.long),
                                         masks=masks)
    return sample


def _masks():
    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 10:20, 10:20] = True  # 100 pixels
    masks[1, 5:30, 30:50] = True
    return masks


def test_same_detections_pass_and_a_lost_one_is_named():
    boxes, masks = [[10., 10., 20., 20.], [30., 5., 50., 30.]], _masks()
    assert compare_detections(_result(boxes, [0.9, 0.4], masks), _result(boxes, [0.9, 0.4], masks.clone()),
                              (40, 60)).ok
    lost = compare_detections(_result(boxes, [0.9, 0.4], masks), _result(boxes[:1], [0.9], masks[:1]), (40, 60))
    assert not lost.ok and 'missing from ONNX Runtime (highest score 0.400)' in lost.problems[0]


def test_a_single_flipped_mask_pixel_passes_more_does_not():
    boxes, masks = [[10., 10., 20., 20.], [30., 5., 50., 30.]], _masks()
    one = masks.clone()
    one[0, 20, 20] = True  # 1 of 101 pixels: above 1%, but a single pixel at the threshold may flip
    assert compare_detections(_result(boxes, [0.9, 0.4], masks), _result(boxes, [0.9, 0.4], one), (40, 60)).ok
    two = one.clone()
    two[0, 20, 19] = True
    result = compare_detections(_result(boxes, [0.9, 0.4], masks), _result(boxes, [0.9, 0.4], two), (40, 60))
    assert not result.ok and 'masks differ on up to 1.96% of their pixels' in result.problems[0]
