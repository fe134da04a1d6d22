"""tools/benchmark.py pieces (no timing asserted): FLOP counting, the three modes, the torch.compile check, the
allocator named in the header."""
import os
import os.path as osp
import sys

import pytest
import torch

TOOLS = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools')
sys.path.insert(0, TOOLS)
import benchmark  # noqa: E402

TINY_SHUNTED = dict(embed_dims=(16, 32, 48, 64), depths=(1, 1, 1, 1), num_heads=(2, 2, 2, 4), mlp_ratios=(2, 2, 2, 2),
                    sr_ratios=(8, 4, 2, 1), num_conv=0)


def test_flops_count_depthwise_backward_like_its_forward(monkeypatch):
    from mmvit_backbones.models import ShuntedTransformer
    monkeypatch.setattr(benchmark, '_build', lambda spec: ShuntedTransformer(arch=TINY_SHUNTED))
    params, forward = benchmark.count_flops('tiny', (64, 96), backward=False)
    _, training = benchmark.count_flops('tiny', (64, 96), backward=True)
    assert params > 0 and forward > 0
    # backward costs about twice the forward (input and weight gradients); torch's own formula would count the
    # depthwise convs' weight gradients as dense convolutions (over 10x)
    assert 2.5 < training / forward < 3.5


@pytest.mark.parametrize('mode', benchmark.MODES)
def test_runner_modes(mode):
    torch.manual_seed(0)
    model = benchmark._build('PlainViT:ti')
    before = [p.detach().clone() for p in model.parameters()]
    runner = benchmark.Runner(model, torch.randn(1, 3, 32, 48), mode)
    outs = runner.step()
    assert len(outs) == 4 and model.training == (mode != 'fwd')
    changed = any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert changed == (mode == 'step')  # only a training step updates the weights
    assert all(p.grad is None for p in model.parameters())  # gradients do not pile up between iterations


@pytest.mark.parametrize('preload', [None, 'libtcmalloc_minimal.so.4', 'libjemalloc.so.2'])
def test_header_names_the_cpu_allocator(preload):
    """A preloaded allocator changes CPU rows by 10-45% (README): the header line says which one ran."""
    import glob
    import subprocess
    env = {k: v for k, v in os.environ.items() if k != 'LD_PRELOAD'}
    if preload:
        found = glob.glob(f'/usr/lib/*/{preload}') + glob.glob(f'/usr/lib/{preload}')
        if not found:
            pytest.skip(f'{preload} is not installed')
        env['LD_PRELOAD'] = found[0]
    code = 'import benchmark; print(benchmark.cpu_allocator())'
    out = subprocess.run([sys.executable, '-c', code], cwd=TOOLS, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    expected = {None: 'glibc malloc', 'libtcmalloc_minimal.so.4': 'tcmalloc', 'libjemalloc.so.2': 'jemalloc'}
    assert out.stdout.strip().splitlines()[-1] == expected[preload]


def test_compile_check_matches_eager_and_counts():
    torch.manual_seed(0)
    runner = benchmark.Runner(benchmark._build('PlainViT:ti'), torch.randn(1, 3, 32, 48), 'fwd')
    # the 'eager' backend traces with dynamo (graph breaks, guards, recompilations) without compiling kernels
    result = benchmark.compile_check(runner, warmup=0, iters=1, backend='eager', other_sizes=[(32, 48)], amp=False)
    assert result['ok'] and result['max_diff'] <= 1e-5
    assert result['graph_breaks'] == {}
    assert result['recompiles'] == 0  # the timed size again: the compiled graphs are reused


def test_model_spec_takes_backbone_arguments():
    model = benchmark._build('PlainViT:ti:with_cp=True,out_indices=(1, 3)')
    assert model.with_cp is True and tuple(model.out_indices) == (1, 3)
    with pytest.raises(SystemExit, match='not key=value'):
        benchmark._build('PlainViT:ti:with_cp')
