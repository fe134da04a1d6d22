"""torchvision detection on the backbones: ``TimmFPNBackbone`` in ``FasterRCNN`` / ``MaskRCNN``, one training step on
the synthetic COCO shapes and an evaluation with pycocotools' COCOeval."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.io import read_image
from torchvision.models.detection import FasterRCNN, MaskRCNN

from mmvit_backbones.interop.torchvision import TimmFPNBackbone
from mmvit_backbones.testing.cpu_configs import SMALL_BACKBONES
from mmvit_backbones.testing.synthetic_data import SHAPE_CLASSES, make_coco_shapes

# torchvision's resize of every image; fewer sampled anchors and RoIs than the defaults keep the step cheap
DETECTOR_SETTINGS = dict(min_size=96, max_size=128, rpn_batch_size_per_image=64, box_batch_size_per_image=64)


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('coco_shapes'))
    files = make_coco_shapes(root, num_train=2, num_val=2, size=(96, 112))
    return root, files


def load_split(root: str, ann_file: str, split: str):
    """The images (float 0..1) and torchvision targets (xyxy boxes, labels, masks) of a COCO file."""
    api = COCO(ann_file)
    images, targets = [], []
    for image_id in sorted(api.getImgIds()):
        info = api.loadImgs(image_id)[0]
        images.append(read_image(osp.join(root, split, info['file_name'])).float() / 255)
        anns = api.loadAnns(api.getAnnIds(imgIds=image_id))
        boxes = [[a['bbox'][0], a['bbox'][1], a['bbox'][0] + a['bbox'][2], a['bbox'][1] + a['bbox'][3]] for a in anns]
        targets.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            labels=torch.tensor([a['category_id'] for a in anns], dtype=torch.int64),
                            masks=torch.from_numpy(np.stack([api.annToMask(a) for a in anns])).to(torch.uint8),
                            image_id=image_id))
    return api, images, targets


def coco_results(outputs, targets):
    results = []
    for output, target in zip(outputs, targets):
        for i, (box, score, label) in enumerate(zip(output['boxes'].tolist(), output['scores'].tolist(),
                                                    output['labels'].tolist())):
            x0, y0, x1, y1 = box
            result = dict(image_id=target['image_id'], category_id=label, bbox=[x0, y0, x1 - x0, y1 - y0],
                          score=score)
            if 'masks' in output:
                binary = np.asfortranarray((output['masks'][i, 0] > 0.5).numpy().astype(np.uint8))
                rle = mask_utils.encode(binary)
                rle['counts'] = rle['counts'].decode('ascii')
                result['segmentation'] = rle
            results.append(result)
    return results


@pytest.mark.parametrize('detector', [FasterRCNN, MaskRCNN])
def test_train_step_and_coco_evaluation(coco, tmp_path, detector):
    root, files = coco
    backbone = TimmFPNBackbone('mmvit_cswin_t', out_channels=64, **SMALL_BACKBONES['CSWin'])
    assert backbone.out_channels == 64
    model = detector(backbone, num_classes=len(SHAPE_CLASSES) + 1, **DETECTOR_SETTINGS)

    _, images, targets = load_split(root, files['train2017'], 'train2017')
    model.train()
    losses = model(images, [{k: v for k, v in t.items() if k != 'image_id'} for t in targets])
    expected = {'loss_classifier', 'loss_box_reg', 'loss_objectness', 'loss_rpn_box_reg'}
    assert set(losses) == expected | ({'loss_mask'} if detector is MaskRCNN else set())
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    torch.optim.SGD(model.parameters(), lr=0.001).step()

    api, images, targets = load_split(root, files['val2017'], 'val2017')
    model.eval()
    model.roi_heads.score_thresh = 0.0  # an untrained detector scores low: keep its detections for the metric
    model.roi_heads.detections_per_img = 10
    with torch.no_grad():
        outputs = model(images)
    assert all(o['boxes'].shape[1] == 4 for o in outputs)
    results = coco_results(outputs, targets)
    assert results, 'the detector returned no detection at all'
    result_file = tmp_path / 'results.json'
    result_file.write_text(json.dumps(results))
    for iou_type in ['bbox'] + (['segm'] if detector is MaskRCNN else []):
        evaluator = COCOeval(api, api.loadRes(str(result_file)), iou_type)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        assert evaluator.stats.shape == (12, ) and 0.0 <= evaluator.stats[0] <= 1.0  # AP@[.5:.95] was computed
