from setuptools import find_packages, setup
setup(name='mmvit_backbones', version='0.1.0', packages=find_packages(include=['mmvit_backbones*']))
