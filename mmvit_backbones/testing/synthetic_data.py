"""Synthetic datasets in the real COCO and ADE20K formats, for the demo and the tests.

No dataset can be downloaded where this project is tested, so the demo and the end-to-end tests train on images of
simple shapes (squares, circles, triangles) whose annotations are exact by construction: each object is drawn from
its polygon, and its COCO box and mask are that polygon's. The files are laid out exactly like the real datasets, so
the unchanged mmdet/mmseg pipelines, datasets and metrics read them:

* COCO: ``<root>/annotations/instances_{train,val}2017.json`` and ``<root>/{train,val}2017/*.jpg``;
* ADE20K: ``<root>/ADEChallengeData2016/{images,annotations}/{training,validation}/*.{jpg,png}``, label 0 = "other"
  (ignored with ``reduce_zero_label=True``), shapes labelled with ADE classes 1..3.
"""
import json
import math
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np

SHAPE_CLASSES = ('square', 'circle', 'triangle')


def _polygon(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if kind == 'circle':
        t = np.linspace(0, 2 * math.pi, 32, endpoint=False)
    elif kind == 'square':
        t = np.linspace(0, 2 * math.pi, 4, endpoint=False) + math.pi / 4 + angle
    else:
        t = np.linspace(0, 2 * math.pi, 3, endpoint=False) - math.pi / 2 + angle
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _scene(rng: np.random.Generator, height: int, width: int, max_objects: int):
    """A textured background with 1..max_objects non-overlapping shapes; returns image and (class, polygon)s."""
    import cv2
    yy, xx = np.mgrid[0:height, 0:width]
    base = rng.uniform(40, 120, size=3)
    slope = rng.uniform(-0.3, 0.3, size=(2, 3))
    image = base + xx[..., None] * slope[0] + yy[..., None] * slope[1] + rng.normal(0, 12, (height, width, 3))
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        for _attempt in range(20):
            r = rng.uniform(0.1, 0.25) * min(height, width)
            cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
            if all(abs(cx - bx) > r + br or abs(cy - by) > r + br for bx, by, br in boxes):
                break
        else:
            continue
        label = int(rng.integers(len(SHAPE_CLASSES)))
        poly = _polygon(SHAPE_CLASSES[label], cx, cy, r, rng.uniform(0, math.pi))
        poly = np.clip(poly, 0, [width - 1, height - 1])
        color = rng.uniform(150, 255, size=3) * rng.permutation([1.0, 0.6, 0.2])
        cv2.fillPoly(image, [np.round(poly).astype(np.int32)], color.tolist())
        objects.append((label, poly))
        boxes.append((cx, cy, r))
    return np.clip(image, 0, 255).astype(np.uint8), objects


def _sizes(rng: np.random.Generator, size: Tuple[int, int], jitter: float) -> Tuple[int, int]:
    h, w = size
    return (int(h * rng.uniform(1 - jitter, 1 + jitter)), int(w * rng.uniform(1 - jitter, 1 + jitter)))


def make_coco_shapes(root: str, num_train: int = 200, num_val: int = 50, size: Tuple[int, int] = (160, 160),
                     max_objects: int = 3, size_jitter: float = 0.2, seed: int = 0) -> Dict[str, str]:
    """Write a COCO-format instance dataset; returns the paths of the two annotation files."""
    import cv2
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    paths = {}
    for split, count in (('train2017', num_train), ('val2017', num_val)):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images: List[dict] = []
        annotations: List[dict] = []
        for image_id in range(1, count + 1):
            h, w = _sizes(rng, size, size_jitter)
            image, objects = _scene(rng, h, w, max_objects)
            file_name = f'{image_id:06d}.jpg'
            cv2.imwrite(osp.join(root, split, file_name), image[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            images.append(dict(id=image_id, file_name=file_name, height=h, width=w))
            for label, poly in objects:
                x0, y0 = poly.min(axis=0)
                x1, y1 = poly.max(axis=0)
                x, y = poly[:, 0], poly[:, 1]
                area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))  # shoelace formula
                annotations.append(dict(
                    id=len(annotations) + 1, image_id=image_id, category_id=label + 1, iscrowd=0,
                    bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)], area=float(area),
                    segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]]))
        ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
        with open(ann_file, 'w') as f:
            json.dump(dict(images=images, annotations=annotations, categories=[
                dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(SHAPE_CLASSES)]), f)
        paths[split] = ann_file
    return paths


def make_ade_shapes(root: str, num_train: int = 40, num_val: int = 10, size: Tuple[int, int] = (128, 128),
                    max_objects: int = 3, seed: int = 0) -> str:
    """Write an ADE20K-format semantic dataset under ``<root>/ADEChallengeData2016``; returns that path."""
    import cv2
    rng = np.random.default_rng(seed)
    base = osp.join(root, 'ADEChallengeData2016')
    for split, count in (('training', num_train), ('validation', num_val)):
        os.makedirs(osp.join(base, 'images', split), exist_ok=True)
        os.makedirs(osp.join(base, 'annotations', split), exist_ok=True)
        for index in range(count):
            h, w = _sizes(rng, size, 0.2)
            image, objects = _scene(rng, h, w, max_objects)
            label_map = np.zeros((h, w), np.uint8)  # 0 = "other", ignored by reduce_zero_label
            for label, poly in objects:
                cv2.fillPoly(label_map, [np.round(poly).astype(np.int32)], label + 1)
            name = f'ADE_{split[:5]}_{index:08d}'
            cv2.imwrite(osp.join(base, 'images', split, name + '.jpg'), image[..., ::-1])
            cv2.imwrite(osp.join(base, 'annotations', split, name + '.png'), label_map)
    return base


def coco_metainfo(classes: Sequence[str] = SHAPE_CLASSES) -> dict:
    palette = [(220, 20, 60), (0, 130, 230), (250, 170, 30)]
    return dict(classes=tuple(classes), palette=palette[:len(classes)])
