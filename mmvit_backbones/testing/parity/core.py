"""Parity against the official implementations (fixtures in the format of the shared parity README).

A fixture records the official state-dict layout (``keys``), integer buffers, an input rule and the official
outputs. :func:`official_state_dict` rebuilds the official weights by the documented rule; :func:`run_parity`
converts them with the project's own converter (exactly the path of a downloaded checkpoint), builds the matching
backbone through the adapter registered for the fixture's ``arch``, and compares every output.

Each family has one adapter module in this package (``mmvit_backbones/testing/parity/<family>.py``) that registers
a factory with :func:`register_parity_adapter`::

    @register_parity_adapter('pyramidtnt')
    def _adapter(fixture) -> ParityAdapter: ...

where ``build()`` returns the backbone at the fixture's official variant (hyper-parameters may be read from
``fixture['keys']`` shapes and ``fixture['variant']``) and ``outputs(model, x)`` returns ``{name: tensor}`` laid out
as the fixture's ``output_notes`` describe. Outputs an adapter cannot produce (classifier logits of dropped heads)
are reported as skipped by name.
"""
import math
import zlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn

from ...checkpoint import load_pretrained


@dataclass
class ParityAdapter:
    build: Callable[[], nn.Module]
    outputs: Callable[[nn.Module, torch.Tensor], Dict[str, torch.Tensor]]


_ADAPTERS: Dict[str, Callable[[dict], ParityAdapter]] = {}


def register_parity_adapter(arch: str):
    def decorator(fn):
        _ADAPTERS[arch] = fn
        return fn
    return decorator


def parity_archs() -> List[str]:
    """The fixture ``arch`` values an adapter exists for."""
    return sorted(_ADAPTERS)


def parity_adapter(fixture: dict) -> ParityAdapter:
    """The adapter for a fixture: builds the backbone at its official variant, lays out its outputs."""
    arch = fixture['arch']
    if arch not in _ADAPTERS:
        raise KeyError(f'no parity adapter for arch {arch!r}; known: {parity_archs()}')
    return _ADAPTERS[arch](fixture)


def named_arch(backbone: type, name: str) -> dict:
    """The settings of the variant ``name`` of a backbone class (aliases included), or ``{}`` if it has none."""
    try:
        return backbone.resolve_arch(str(name))
    except ValueError:
        return {}


def official_state_dict(fixture: dict) -> Dict[str, torch.Tensor]:
    """The official-layout weights of a fixture, drawn by its documented rule."""
    state = {}
    for key, shape, dtype in fixture['keys']:
        dtype = getattr(torch, str(dtype).replace('torch.', ''))
        if not (dtype.is_floating_point or dtype.is_complex):
            state[key] = fixture['int_buffers'][key].clone()
            continue
        g = torch.Generator().manual_seed(zlib.crc32(key.encode('utf-8')))
        shape = tuple(shape)
        if key.endswith('running_var'):
            value = 0.5 + torch.rand(shape, generator=g, dtype=torch.float64)
        elif key.endswith('running_mean'):
            value = 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
        elif len(shape) <= 1:
            value = (1.0 if key.endswith('weight') else 0.0) + 0.1 * torch.randn(shape, generator=g,
                                                                                 dtype=torch.float64)
        else:
            value = torch.randn(shape, generator=g, dtype=torch.float64) / math.sqrt(math.prod(shape[1:]))
        state[key] = value.to(dtype)
    return state


def fixture_input(fixture: dict) -> torch.Tensor:
    h, w = fixture['input_hw']
    return torch.randn(1, 3, h, w, generator=torch.Generator().manual_seed(int(fixture.get('input_seed', 0))),
                       dtype=torch.float32)


def tolerance(reference: torch.Tensor) -> float:
    return 1e-4 * reference.abs().max().item() + 1e-5


@dataclass
class OutputResult:
    name: str
    status: str  # 'ok', 'MISMATCH', 'skipped'
    max_abs_diff: float = float('nan')
    tol: float = float('nan')
    detail: str = ''

    def line(self) -> str:
        if self.status == 'skipped':
            return f'  {self.name:<14} skipped  ({self.detail})'
        return (f'  {self.name:<14} {self.status:<8} max|diff| {self.max_abs_diff:.3e}  tol {self.tol:.3e}'
                + (f'  {self.detail}' if self.detail else ''))


def run_parity(fixture: dict) -> Tuple[List[OutputResult], nn.Module]:
    """Convert the fixture's official weights, run the backbone, compare every output."""
    adapter = parity_adapter(fixture)
    model = adapter.build()
    load_pretrained(model, official_state_dict(fixture))
    model.eval()
    with torch.no_grad():
        ours = adapter.outputs(model, fixture_input(fixture))
    results = []
    for name, ref in fixture['outputs'].items():
        if name not in ours:
            results.append(OutputResult(name, 'skipped', detail='classifier head output; the backbone drops the head'))
            continue
        out = ours[name].float()
        if out.shape != ref.shape:
            results.append(OutputResult(name, 'MISMATCH', detail=f'shape {tuple(out.shape)} vs {tuple(ref.shape)}'))
            continue
        diff = (out - ref).abs().max().item()
        tol = tolerance(ref)
        results.append(OutputResult(name, 'ok' if diff <= tol else 'MISMATCH', diff, tol))
    return results, model
