"""Shared start of the research scripts in dev/: the repository root (the package, from a source checkout) and
tools/ (they reuse tools/benchmark.py's timing and memory helpers) on sys.path. Run them from the repository root."""
import os.path as osp
import sys
import warnings

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for path in (osp.join(ROOT, 'tools'), ROOT):
    if path not in sys.path:
        sys.path.insert(0, path)

# mmengine 0.10.7 imports pkg_resources (needed for mmdet::/mmseg:: base configs); its deprecation notice is noise.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
