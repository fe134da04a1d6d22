"""Make the tools work from a source checkout without installing the package."""
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import warnings

# mmengine 0.10.7 imports pkg_resources (needed for mmdet::/mmseg:: base configs); its deprecation notice is noise.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated', category=UserWarning)
