"""Parity with the official implementations: the method (:mod:`.core`) and one adapter module per family."""
from . import (  # noqa: F401
                   botnet,
                   cswin,
                   deepvit,
                   gcvit,
                   mlp_mixer,
                   plain_vit,
                   pyramid_tnt,
                   resmlp,
                   shunted,
                   t2t_vit,
                   tnt,
)
from .core import (
                   OutputResult,
                   ParityAdapter,
                   fixture_input,
                   official_state_dict,
                   parity_adapter,
                   parity_archs,
                   register_parity_adapter,
                   run_parity,
                   tolerance,
)

__all__ = ['OutputResult', 'ParityAdapter', 'fixture_input', 'official_state_dict', 'parity_adapter', 'parity_archs',
           'register_parity_adapter', 'run_parity', 'tolerance']
