"""Test and demo support: never imported by the runtime package (``mmvit_backbones.models`` and its layers).

* :mod:`.parity`: the parity method: official weights drawn by the fixtures' rule, one adapter per fixture ``arch``
  that builds our backbone and lays out its outputs as the official code's, the comparison.
* :mod:`.contract`: the checks every backbone's tests run (pyramid shapes at any size, bad input, freezing, ...).
* :mod:`.cpu_configs`: shrinks the shipped configs to small backbones and sizes that train on a CPU in seconds.
* :mod:`.synthetic_data`: generated COCO- and ADE20K-format datasets (tests and the demo).
"""
