"""mmvit_backbones: eleven vision-transformer and MLP backbone families for MMDetection 3.x and MMSegmentation 1.x.

Runtime dependencies are declared below. mmcv has no wheel for current torch on PyPI: build it from the sdist
against the installed torch *before* installing this package (``tools/setup_env.sh`` does it; docs/installation.md),
otherwise pip builds it in an isolated environment without its compiled ops.
"""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent


def read_version() -> str:
    """The version from mmvit_backbones/version.py, read as text: importing the package would need torch."""
    text = (HERE / 'mmvit_backbones' / 'version.py').read_text(encoding='utf-8')
    return re.search(r"^__version__ = '([^']+)'", text, re.M).group(1)


setup(
    name='mmvit_backbones',
    version=read_version(),
    description='PyramidTNT, GC ViT, Shunted Transformer, T2T-ViT, BoTNet, plain ViT (DINO), CSWin, TNT, DeepViT, '
    'MLP-Mixer and ResMLP backbones with official weights at any input size, for MMDetection 3.x and '
    'MMSegmentation 1.x',
    long_description=(HERE / 'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.9',
    packages=find_packages(include=['mmvit_backbones', 'mmvit_backbones.*']),
    install_requires=[
        'torch>=2.1',
        'numpy',
        'mmengine>=0.10.7,<0.11',
        'mmcv>=2.0.0,<2.2.0',  # mmdet 3.3.0 / mmseg 1.2.2 assert mmcv < 2.2.0; build with ops from source
        'timm>=1.0,<1.1',
        'opencv-python',
    ],
    extras_require={
        'det': ['mmdet==3.3.0', 'pycocotools'],
        'seg': ['mmsegmentation==1.2.2', 'ftfy', 'regex'],  # mmseg 1.2.2 imports ftfy/regex without declaring
        'tests': ['pytest>=7', 'tqdm', 'ruff==0.17.6'],
        # the documentation site (mkdocs build --strict runs in the test suite)
        'docs': ['mkdocs==1.6.1', 'mkdocs-material==9.8.2', 'mkdocstrings==1.0.8', 'mkdocstrings-python==2.0.11'],
        # deployment through mmdeploy 1.3.1 to ONNX Runtime; mmdeploy itself must be installed with --no-deps
        # (its protobuf<=3.20.2 pin breaks onnx): tools/setup_env.sh does it
        'deploy': ['onnx==1.23.2', 'onnxruntime==1.32.0', 'aenum'],
        # the same backbones from timm, segmentation_models_pytorch, Hugging Face transformers and torchvision
        'interop': ['torchvision', 'segmentation-models-pytorch==0.6.0', 'transformers==5.25.0'],
    },
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
)
