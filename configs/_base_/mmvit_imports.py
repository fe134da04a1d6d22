# Registers mmvit_backbones' models in mmengine's registries (visible from mmdet and mmseg).
# A config that sets its own `custom_imports` replaces this dict: keep 'mmvit_backbones' in its list.
custom_imports = dict(imports=['mmvit_backbones'], allow_failed_imports=False)
