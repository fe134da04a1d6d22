# Cascade Mask R-CNN with the box heads of Swin's Cascade 3x recipe, used unchanged by GC ViT
# (NVlabs/GCVit detection/configs/gcvit/cascade_mask_rcnn_gcvit_tiny_3x_coco.py:18-77), PVTv2
# (whai362/PVT detection/configs/cascade_mask_rcnn_pvt_v2_b2_fpn_3x_mstrain_fp16.py:19-78) and iBOT
# (bytedance/ibot evaluation/object_detection/configs/cascade_rcnn/vit_small_giou_4conv1f_coco_3x.py:40-99):
# each of the three stages has 4 shared 3x3 convs with SyncBN + 1 fc (1024), class-specific regression trained with
# GIoU (weight 10) on decoded boxes. Everything else (RPN, samplers, mask head, test settings) is mmdet's
# cascade-mask-rcnn_r50_fpn base, identical to those repositories' mmdet 2.x bases.
# A config uses this file in place of 'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py' and sets only the
# backbone and the neck's in_channels.
_base_ = ['mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py']


def _box_head(target_stds):
    return dict(
        type='ConvFCBBoxHead',
        num_shared_convs=4,
        num_shared_fcs=1,
        in_channels=256,
        conv_out_channels=256,
        fc_out_channels=1024,
        roi_feat_size=7,
        num_classes=80,
        bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.], target_stds=target_stds),
        reg_class_agnostic=False,
        reg_decoded_bbox=True,
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
        loss_bbox=dict(type='GIoULoss', loss_weight=10.0))


model = dict(
    roi_head=dict(bbox_head=[  # a list replaces the base's list of three Shared2FC heads
        _box_head([0.1, 0.1, 0.2, 0.2]),
        _box_head([0.05, 0.05, 0.1, 0.1]),
        _box_head([0.033, 0.033, 0.067, 0.067]),
    ]))
