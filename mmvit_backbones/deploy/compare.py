"""PyTorch against ONNX Runtime on what a user gets: detections (boxes, scores, labels, masks) and class maps.

Detections are matched one to one (same label, the highest IoU first); a detection above ``score_thr`` in either
result without a counterpart is a mismatch, and so are matched pairs whose box, score or mask differ by more than
the tolerances. Low-score detections may legitimately come and go: mmdeploy's NMS keeps candidates in another
order than mmdet's, so only those above ``score_thr`` must have a partner.
"""
from dataclasses import dataclass, field
from typing import List

import torch


@dataclass
class Comparison:
    """The outcome at one input size: ``problems`` empty means equal within the tolerances."""
    size: tuple
    summary: str
    problems: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clamp(min=0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clamp(min=0).prod(-1)
    return inter / (area_a[:, None] + area_b[None, :] - inter).clamp(min=1e-6)


def compare_detections(torch_result, ort_result, size, score_thr: float = 0.3, box_tol: float = 1.0,
                       score_tol: float = 0.01, mask_tol: float = 0.01) -> Comparison:
    """``DetDataSample`` from PyTorch vs from ONNX Runtime. ``box_tol`` in pixels, ``mask_tol`` as the fraction of a
    matched pair's mask pixels (union) that differ (a single differing pixel always passes)."""
    ref, out = torch_result.pred_instances.cpu(), ort_result.pred_instances.cpu()
    iou = _box_iou(ref.bboxes.float(), out.bboxes.float())
    iou[ref.labels[:, None] != out.labels[None, :]] = 0
    pairs, used = [], set()
    for i in torch.argsort(ref.scores, descending=True).tolist():
        candidates = [j for j in torch.argsort(iou[i], descending=True).tolist() if iou[i, j] > 0.5 and j not in used]
        if candidates:
            pairs.append((i, candidates[0]))
            used.add(candidates[0])
    matched_ref = {i for i, _ in pairs}
    problems = []
    lost = [float(s) for i, s in enumerate(ref.scores) if s >= score_thr and i not in matched_ref]
    extra = [float(s) for j, s in enumerate(out.scores) if s >= score_thr and j not in used]
    if lost:
        problems.append(f'{len(lost)} PyTorch detection(s) above {score_thr} missing from ONNX Runtime '
                        f'(highest score {max(lost):.3f})')
    if extra:
        problems.append(f'{len(extra)} ONNX Runtime detection(s) above {score_thr} not in PyTorch '
                        f'(highest score {max(extra):.3f})')
    shown = [(i, j) for i, j in pairs if max(ref.scores[i], out.scores[j]) >= score_thr]
    box_diff = max((float((ref.bboxes[i] - out.bboxes[j]).abs().max()) for i, j in shown), default=0.0)
    score_diff = max((float((ref.scores[i] - out.scores[j]).abs()) for i, j in shown), default=0.0)
    if box_diff > box_tol:
        problems.append(f'boxes differ by up to {box_diff:.2f} px (tolerance {box_tol})')
    if score_diff > score_tol:
        problems.append(f'scores differ by up to {score_diff:.4f} (tolerance {score_tol})')
    summary = (f'{len(shown)} detections above {score_thr} matched (of {int((ref.scores >= score_thr).sum())} '
               f'PyTorch / {int((out.scores >= score_thr).sum())} ONNX Runtime), max |box diff| {box_diff:.2e} px, '
               f'max |score diff| {score_diff:.2e}')
    if 'masks' in ref and 'masks' in out and shown:
        mask_diff, beyond = 0.0, []
        for i, j in shown:
            a, b = ref.masks[i].bool(), out.masks[j].bool()
            differing, union = float((a ^ b).sum()), max(float((a | b).sum()), 1.0)
            mask_diff = max(mask_diff, differing / union)
            # one pixel may flip: its pasted probability can lie within rounding of the threshold
            if differing > max(1.0, mask_tol * union):
                beyond.append(differing / union)
        summary += f', masks differ on up to {100 * mask_diff:.2f}% of their pixels'
        if beyond:
            problems.append(f'masks differ on up to {100 * max(beyond):.2f}% of their pixels (tolerance '
                            f'{100 * mask_tol:g}%, or one pixel)')
    return Comparison(tuple(size), summary, problems)


def compare_segmentation(torch_result, ort_result, size, min_agreement: float = 0.999) -> Comparison:
    """``SegDataSample`` from PyTorch vs from ONNX Runtime: the fraction of pixels with the same class."""
    ref = torch_result.pred_sem_seg.data.cpu()
    out = ort_result.pred_sem_seg.data.cpu().to(ref.dtype)
    if ref.shape != out.shape:
        return Comparison(tuple(size), '', [f'class map shape {tuple(out.shape)} from ONNX Runtime, '
                                            f'{tuple(ref.shape)} from PyTorch'])
    agreement = float((ref == out).float().mean())
    problems = [] if agreement >= min_agreement else [
        f'class maps agree on {100 * agreement:.2f}% of pixels (at least {100 * min_agreement:g}% expected)']
    return Comparison(tuple(size), f'class maps agree on {100 * agreement:.3f}% of {ref.numel()} pixels', problems)
