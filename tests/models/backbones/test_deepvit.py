"""DeepViT backbone: pyramid contract, parity, the token-count invariance of re-attention, checkpoints, training."""
import copy
import importlib
import math

import pytest
import torch
import torch.nn.functional as F

import mmvit_backbones.models.backbones.deepvit as deepvit_module
from mmvit_backbones.checkpoint import load_pretrained
from mmvit_backbones.models import DeepViT
from mmvit_backbones.models.layers import resize_grid_embed
from mmvit_backbones.testing.contract import (
    LARGE_SIZES,
    ODD_SIZES,
    assert_bad_inputs_rejected,
    assert_builds_from_both_registries,
    assert_checkpoint_forms,
    assert_foreign_checkpoint_error,
    assert_frozen,
    assert_layer_depths,
    assert_missing_checkpoint_error,
    assert_naive_attention_matches,
    assert_norm_eval,
    assert_parity,
    assert_pyramid,
    assert_with_cp_equivalent,
    clone_build,
    pyramid_shapes,
)
from mmvit_backbones.testing.parity import fixture_input, parity_adapter, tolerance

# the package exports a function of the same name as the module
attention_module = importlib.import_module('mmvit_backbones.models.layers.attention')

FIXTURE = 'deepvit_16b_224.pt'
# Tiny variants with every piece of the official designs: 16B-like (patch conv, all blocks re-attend) and S-like
# (CNN stem, last blocks re-attend, transform scale, scale adjustment 0.5). Pretrained on 64x64: 4x4 grid, N0 = 17.
TINY_B = dict(embed_dims=32, depth=4, num_heads=4)
TINY_S = dict(embed_dims=32, depth=4, num_heads=4, num_reattention_blocks=2, cnn_stem=True, transform_scale=True,
              scale_adjustment=0.5)
build_tiny = clone_build(DeepViT, arch=TINY_S, pretrain_img_size=64, drop_path_rate=0.1)
build_tiny_b = clone_build(DeepViT, arch=TINY_B, pretrain_img_size=64)


def randomize_reattention(model: DeepViT, seed: int = 0) -> DeepViT:
    """Non-trivial Theta, BN affine and BN running statistics (a freshly built model has identity/unit ones)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for i in model.reattention_blocks:
            attn = model.blocks[i].attn
            heads = attn.num_heads
            attn.reatten_matrix.weight.copy_(torch.randn(heads, heads, 1, 1, generator=g) / heads ** 0.5)
            attn.reatten_matrix.bias.copy_(0.1 * torch.randn(heads, generator=g))
            attn.var_norm.weight.copy_(1 + 0.1 * torch.randn(heads, generator=g))
            attn.var_norm.bias.copy_(0.1 * torch.randn(heads, generator=g))
            attn.var_norm.running_mean.copy_(0.1 * torch.randn(heads, generator=g))
            attn.var_norm.running_var.copy_(0.5 + torch.rand(heads, generator=g))
    return model


def final_tokens(model: DeepViT, x: torch.Tensor) -> torch.Tensor:
    """The tokens after the final norm, (B, 1 + gh*gw, D) with cls first."""
    captured = []
    hook = model.norm.register_forward_hook(lambda _m, _i, out: captured.append(out))
    model(x)
    hook.remove()
    return captured[0]


def official_forward_tokens(model: DeepViT, x: torch.Tensor) -> torch.Tensor:
    """The official DeepViT computation written out (layers.py ``ReAttention``/``Block``): materialised maps,
    Theta as a 1x1 Conv2d, the BN in eval mode, ``x * s`` before each LayerNorm, on our module's parameters."""
    tokens, _, _ = model.embed(x)
    for block in model.blocks:
        s = block.scale_adjustment
        norm1 = F.layer_norm(tokens * s, (tokens.shape[-1], ), block.norm1.weight, block.norm1.bias, 1e-6)
        attn = block.attn
        b, n, c = norm1.shape
        q, k, v = attn.qkv(norm1).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
        maps = ((q @ k.transpose(-2, -1)) * (c // attn.num_heads) ** -0.5).softmax(dim=-1)
        if hasattr(attn, 'reatten_matrix'):
            maps = attn.var_norm(attn.reatten_matrix(maps)) * attn.reatten_scale
        tokens = tokens + attn.proj((maps @ v).transpose(1, 2).reshape(b, n, c)) / s
        norm2 = F.layer_norm(tokens * s, (c, ), block.norm2.weight, block.norm2.bias, 1e-6)
        tokens = tokens + block.mlp(norm2) / s
    return model.norm(tokens)


# ------------------------------------------------------------------------------------------------------------ shapes
def test_pyramid_shapes_any_size():
    model = build_tiny(window_block_indexes=(0, 2))  # windows of 4x4 tokens, padded where they do not fit
    assert model.out_channels == (8, 16, 32, 32)
    assert_pyramid(model, ODD_SIZES, batch=2)
    # every block global; 800x1333: test_detection_size_memory_bounded (the CNN stem alone takes seconds there)
    assert_pyramid(build_tiny_b(), ODD_SIZES + LARGE_SIZES[:1])


@pytest.mark.parametrize('out_indices', [(3, ), (1, 2), (0, 3)])
def test_out_indices_subsets(out_indices):
    model = build_tiny(out_indices=out_indices)
    assert_pyramid(model, [(97, 131)])
    model.train()
    outs = model(torch.randn(1, 3, 64, 96))
    sum(o.mean() for o in outs).backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, f'parameters without gradient (DDP would fail): {unused}'


def test_official_variants_build():
    # parameters with the 1000-class head, without our pyramid (computed from the official code: notes §2.2)
    for arch, params, dims, reattention in (('16b', 24.43, 384, 16), ('s', 27.31, 396, 5), ('l', 58.88, 420, 12)):
        with torch.device('meta'):
            model = DeepViT(arch=arch)
        assert model.out_channels == (dims // 4, dims // 2, dims, dims)
        assert model.reattention_blocks == tuple(range(model.depth - reattention, model.depth))
        pyramid = sum(p.numel() for p in model.pyramid.parameters())
        total = sum(p.numel() for p in model.parameters()) - pyramid + dims * 1000 + 1000
        assert abs(total / 1e6 - params) < 0.015, (arch, total)
        # default layout: windows of the pretraining grid, the last block of each quarter global
        quarter = model.depth // 4
        assert model.window_size == 14
        assert [i for i in range(model.depth) if i not in model.window_block_indexes] == \
            [quarter * q - 1 for q in range(1, 5)]
    for arch, depth in (('24b', 24), ('32b', 32)):  # 16B deeper (building them takes seconds)
        assert DeepViT.resolve_arch(arch) == dict(DeepViT.resolve_arch('16b'), depth=depth,
                                                  num_reattention_blocks=depth)
    assert DeepViT.resolve_arch('deepvit_S') == DeepViT.resolve_arch('s')
    assert DeepViT.resolve_arch('deepvit_patch16_224_re_attn_24b') == DeepViT.resolve_arch('24b')
    s = DeepViT.resolve_arch('s')
    assert (s['transform_scale'], s['scale_adjustment'], s['cnn_stem']) == (True, 0.5, True)
    l384 = DeepViT.resolve_arch('deepvit_l_384')
    assert (l384['transform_scale'], l384['scale_adjustment']) == (False, 0.5)
    with torch.device('meta'):
        assert DeepViT(arch='l', pretrain_img_size=384).num_ref_tokens == 577


def test_builds_from_both_registries():
    assert_builds_from_both_registries(dict(type='DeepViT', arch=TINY_S, pretrain_img_size=64))


# ------------------------------------------------------------------------------------------------------------ parity
def test_parity_fixture(fixture):
    assert_parity(fixture, skipped=('logits', ))


def test_default_windows_reproduce_the_fixture(fixture, official):
    """At 224 the default layout (14x14 windows in 12 of 16 blocks) is the official model: one full window of
    196 + cls tokens is the global attention over the 197 pretraining tokens."""
    adapter = parity_adapter(fixture)
    model = DeepViT(arch='16b').eval()
    assert len(model.window_block_indexes) == 12
    load_pretrained(model, official)
    with torch.no_grad():
        ours = adapter.outputs(model, fixture_input(fixture))
    for name in ('block3', 'block7', 'block11', 'block15', 'norm'):
        ref = fixture['outputs'][name]
        assert (ours[name] - ref).abs().max().item() <= tolerance(ref), name


def test_parity_adapter_reads_variant(fixture):
    """The adapter builds S-like / L-384-like variants from the keys and the official function name."""
    def early_reattention(key: str) -> bool:  # Theta/BN entries of blocks 0..10: S re-attends in 11..15 only
        return key.startswith('blocks.') and int(key.split('.')[1]) < 11 and ('reatten' in key or 'var_norm' in key)

    keys = [[k, s, d] for k, s, d in fixture['keys'] if not early_reattention(k)]
    keys += [['patch_embed.conv1.weight', [64, 3, 7, 7], 'torch.float32']]
    fake = dict(copy.deepcopy({k: v for k, v in fixture.items() if k not in ('keys', 'outputs')}), keys=keys,
                variant='deepvit_S', outputs={'block15': None, 'norm': None})
    with torch.device('meta'):  # structure only
        model = parity_adapter(fake).build()
    assert model.reattention_blocks == tuple(range(11, 16)) and isinstance(model.patch_embed,
                                                                           deepvit_module.ConvPatchEmbed)
    assert model.blocks[15].scale_adjustment == 0.5 and model.blocks[15].attn.reatten_scale == 32 ** -0.5
    assert model.window_block_indexes == ()  # parity builds the official (all global) model
    keys = [[k, [1, 577, 384] if k == 'pos_embed' else s, d] for k, s, d in fixture['keys']]
    fake = dict(fake, keys=keys, variant='deepvit_L_384')
    with torch.device('meta'):
        model = parity_adapter(fake).build()
    assert model.pretrain_grid == (24, 24) and model.num_ref_tokens == 577 and model.blocks[0].scale_adjustment == 0.5


@pytest.mark.parametrize('build', [build_tiny, build_tiny_b], ids=['s_like', 'b_like'])
def test_matches_official_formula(build):
    """Folded Theta/BN, the eps-rescaled LayerNorm and the constant term equal the official computation written out
    (S-like: CNN stem, scale adjustment 0.5, transform scale; B-like: every block re-attends) at the pretraining
    token count, also for a batch of 2."""
    torch.manual_seed(0)
    model = randomize_reattention(build(window_block_indexes=())).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ours = final_tokens(model, x)
        ref = official_forward_tokens(model, x)
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------- token-count invariance
def channel_rms(model: DeepViT, x: torch.Tensor) -> torch.Tensor:
    """Per-channel RMS over the grid tokens of the last block's output (before the final norm): (D,)."""
    captured = {}
    hook = model.blocks[-1].register_forward_hook(lambda _m, _i, out: captured.__setitem__('x', out))
    with torch.no_grad():
        model(x)
    hook.remove()
    return captured['x'][:, 1:].pow(2).mean(dim=(0, 1)).sqrt()


def scale_shift(model: DeepViT, small: torch.Tensor, large: torch.Tensor) -> float:
    """The measure: median over channels of |log(RMS_c at the large size / RMS_c at the small size)|."""
    return (channel_rms(model, large) / channel_rms(model, small)).log().abs().median().item()


def test_token_count_invariance(official):
    """The official rule adds ``k_h * sum_j v_j`` to every re-attention output, so its output scale follows the token
    count; ours keeps each map row's pretrained mass.

    Measure: median over the 384 channels of |log(RMS at 448 / RMS at 224)| of the last block's output (first 4
    blocks of 16B, fixture weights). The 448 input is the 224 one tiled 2x2, so the patches are the same four times
    over and only the token count (197 -> 785) and the resized position table change. Measured: official rule 1.388
    (= log 4: the constant term grows with N), ours 0.020 (every block global; the cls token's share of the value
    mean drops from 1/197 to 1/785) and 0.0002 (windows in blocks 0-2); the same weights without re-attention (a
    plain ViT): 0.002."""
    small = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    large = small.repeat(1, 1, 2, 2)
    arch = dict(DeepViT.resolve_arch('16b'), depth=4, num_reattention_blocks=4)
    weights = {k: v for k, v in official.items() if not (k.startswith('blocks.') and int(k.split('.')[1]) >= 4)}
    shifts = {}
    for name, kwargs in (('official', dict(token_count_invariant=False, window_block_indexes=())),
                         ('global', dict(window_block_indexes=())),
                         ('windowed', dict(window_block_indexes=(0, 1, 2)))):
        model = DeepViT(arch=arch, **kwargs).eval()
        load_pretrained(model, weights)
        shifts[name] = scale_shift(model, small, large)
    assert abs(shifts['official'] - math.log(4)) < 0.1, shifts  # the output scale follows N (x4)
    assert shifts['global'] < 0.05 and shifts['windowed'] < 0.05, shifts  # ... and stays put with the fix


def test_constant_term_per_token_count():
    """One re-attention call: the row sums of the effective map are N-independent; ``False`` scales them with N."""
    torch.manual_seed(0)
    model = randomize_reattention(build_tiny_b(window_block_indexes=()))
    attn = model.blocks[0].attn
    mix, const = attn.folded_transform()
    ones = torch.ones(1, 4, 1, 8)  # v = 1 everywhere: the output is the row sum of the map
    for n in (17, 70, 300):
        q, k = torch.randn(1, 4, 5, 8), torch.randn(1, 4, n, 8)
        with torch.no_grad():
            out = attn.core(q, k, ones.expand(1, 4, n, 8))
            attn.token_count_invariant = False
            raw = attn.core(q, k, ones.expand(1, 4, n, 8))
            attn.token_count_invariant = True
        want = mix.sum(1) + const * model.num_ref_tokens
        torch.testing.assert_close(out[0, :, :, 0], want[:, None].expand(4, 5).detach(), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(raw[0, :, :, 0], (mix.sum(1) + const * n)[:, None].expand(4, 5).detach(),
                                   rtol=1e-5, atol=1e-5)


def test_masked_keys_do_not_count():
    """A padded window: keys with a -inf bias count neither in the softmax nor in N."""
    torch.manual_seed(0)
    attn = randomize_reattention(build_tiny_b(window_block_indexes=())).blocks[1].attn
    q, k, v = torch.randn(3, 4, 6, 8), torch.randn(3, 4, 10, 8), torch.randn(3, 4, 10, 8)
    bias = torch.zeros(3, 1, 1, 10)
    bias[..., 7:] = float('-inf')
    with torch.no_grad():
        masked = attn.core(q, k, v, bias)
        cut = attn.core(q, k[:, :, :7], v[:, :, :7])
    torch.testing.assert_close(masked, cut)


@pytest.mark.parametrize('with_cp', [False, True])
def test_chunked_reattention_equals_whole(monkeypatch, with_cp):
    """Query-row chunks (checkpointed when training, also nested in a block's ``with_cp``) give the same outputs
    and gradients as one whole map."""
    torch.manual_seed(0)
    model = randomize_reattention(build_tiny_b(window_size=3, window_block_indexes=(0, 2), with_cp=with_cp))
    model.train()
    x = torch.randn(2, 3, 80, 96)
    results = []
    for limit in (2 ** 30, 500):  # 500 entries: 2x4 maps of 31 keys -> 2 query rows per chunk
        monkeypatch.setattr(attention_module, 'MAP_CHUNK_ELEMENTS', limit)
        model.zero_grad()
        outs = model(x)
        sum(o.pow(2).mean() for o in outs).backward()
        results.append(([o.detach() for o in outs], {n: p.grad.clone() for n, p in model.named_parameters()
                                                     if p.grad is not None}))
    (outs_a, grads_a), (outs_b, grads_b) = results
    for a, b in zip(outs_a, outs_b):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert grads_a.keys() == grads_b.keys() and 'blocks.1.attn.reatten_matrix.weight' in grads_a
    for name in grads_a:
        torch.testing.assert_close(grads_a[name], grads_b[name], rtol=1e-4, atol=1e-6, msg=name)


def test_reattention_statistics_are_not_updated():
    """Training never re-estimates the BN statistics of the maps (running stats fixed, gamma/beta/Theta learn)."""
    model = randomize_reattention(build_tiny_b()).train()
    stats = {n: b.clone() for n, b in model.named_buffers() if 'var_norm' in n}
    outs = model(torch.randn(2, 3, 64, 80))
    sum(o.mean() for o in outs).backward()
    assert all(torch.equal(b, stats[n]) for n, b in model.named_buffers() if 'var_norm' in n)
    assert model.blocks[0].attn.var_norm.weight.grad is not None
    assert model.blocks[0].attn.reatten_matrix.bias.grad is not None


def test_sdpa_in_plain_blocks_matches_naive():
    model = randomize_reattention(build_tiny(window_size=3, window_block_indexes=(0, 1))).eval()
    assert_naive_attention_matches(model, torch.randn(1, 3, 70, 90))


# ------------------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope='module')
def official2(official):
    return {k: v for k, v in official.items() if not (k.startswith('blocks.') and int(k.split('.')[1]) >= 2)}


def build_b2(**kwargs) -> DeepViT:
    """16B cut to its first 2 blocks (official layout and widths at a fraction of the cost); the pyramid, which no
    ImageNet checkpoint has, is initialised the same way in every build."""
    torch.manual_seed(0)
    return DeepViT(**dict(dict(arch=dict(DeepViT.resolve_arch('16b'), depth=2, num_reattention_blocks=2)), **kwargs))


def test_checkpoint_forms(official2, tmp_path):
    with_head = dict(official2, **{'head.weight': torch.zeros(1000, 384), 'head.bias': torch.zeros(1000)})
    assert_checkpoint_forms(build_b2, with_head, str(tmp_path))
    report = load_pretrained(build_b2(), with_head)
    assert not report.missing and not report.unexpected
    converted = DeepViT.convert_checkpoint(with_head)
    assert 'head.weight' not in converted and DeepViT.convert_checkpoint(converted).keys() == converted.keys()


def test_missing_and_foreign_checkpoints():
    assert_missing_checkpoint_error(build_tiny)
    assert_foreign_checkpoint_error(build_tiny)


def test_resize_at_load_and_runtime_cache(official2):
    """A 224 checkpoint loads into a model built for 320 (table resized, N0 = 401); runtime resize is cached."""
    model = build_b2(pretrain_img_size=320)
    load_pretrained(model, official2)
    want = resize_grid_embed(official2['pos_embed'], (14, 14), (20, 20), 1)
    torch.testing.assert_close(model.pos_embed.data, want)
    assert model.num_ref_tokens == 401 and model.window_size == 20
    model = build_b2().eval()
    load_pretrained(model, official2)
    with torch.no_grad():
        model(torch.randn(1, 3, 224, 320))
        assert len(model._pos_cache._entries) == 1
        first = model.position_embedding((14, 20))
        assert first is model.position_embedding((14, 20))
        torch.testing.assert_close(first, resize_grid_embed(model.pos_embed, (14, 14), (14, 20), 1))
        assert model.position_embedding((14, 14)) is model.pos_embed
    model.train()
    assert model.position_embedding((14, 20)).requires_grad


def test_padding_to_whole_patches():
    """Sizes that are not multiples of 16 are zero-padded at the bottom/right (CNN stem too)."""
    model = randomize_reattention(build_tiny(window_block_indexes=())).eval()
    x = torch.randn(1, 3, 70, 93)
    with torch.no_grad():
        a = final_tokens(model, x)
        b = final_tokens(model, F.pad(x, (0, 3, 0, 10)))
    assert a.shape == b.shape == (1, 1 + 5 * 6, 32)
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------------------------------------------------- training
@pytest.mark.parametrize('frozen_stages', [0, 2, 4])
def test_frozen_stages(frozen_stages):
    assert_frozen(build_tiny, frozen_stages)


def test_norm_eval():
    assert_norm_eval(build_tiny)  # the CNN stem's BNs (and var_norm, which never uses batch statistics anyway)


@pytest.mark.parametrize('kwargs', [dict(), dict(window_size=3, window_block_indexes=(1, 2)), dict(norm_eval=True)])
def test_with_cp_equivalent(kwargs):  # norm_eval: the CNN stem is checkpointed too
    assert_with_cp_equivalent(clone_build(build_tiny, **kwargs))


def test_stem_checkpointed_only_with_frozen_statistics(monkeypatch):
    """with_cp recomputes the CNN stem only when its BatchNorms use running statistics (a training-mode BN would
    update them twice)."""
    calls = []
    original = deepvit_module.torch_checkpoint.checkpoint
    monkeypatch.setattr(deepvit_module.torch_checkpoint, 'checkpoint',
                        lambda fn, *args, **kwargs: calls.append(fn) or original(fn, *args, **kwargs))
    for norm_eval, expected in ((True, 1), (False, 0)):
        calls.clear()
        model = build_tiny(with_cp=True, norm_eval=norm_eval).train()
        model(torch.randn(1, 3, 64, 64))
        assert sum(getattr(fn, '__name__', '') == '_stride2_maps' for fn in calls) == expected


def test_bad_inputs():
    assert_bad_inputs_rejected(build_tiny, bad_arch_kwargs=[
        dict(arch=dict(embed_dims=30, depth=2, num_heads=4)), dict(arch=dict(depth=2)),
        dict(arch=dict(TINY_B, num_reattention_blocks=5)), dict(arch=dict(TINY_B, scale_adjustment=0)),
        dict(window_size=0, window_block_indexes=(1, )), dict(pretrain_img_size=8), dict(drop_path_rate=1.0)])


def test_layer_depths():
    model = build_tiny()
    assert_layer_depths(model)
    assert model.get_layer_depth('backbone.patch_embed.conv1.weight', prefix='backbone.') == (0, 6)
    assert model.get_layer_depth('backbone.blocks.3.attn.reatten_matrix.weight', prefix='backbone.') == (4, 6)
    assert model.get_layer_depth('backbone.pyramid.up2.weight', prefix='backbone.') == (5, 6)


def test_detection_size_memory_bounded(monkeypatch):
    """800x1333: padded windows, and a global re-attention block (4201 tokens) that never materialises more than
    one chunk of maps."""
    whole, chunks = [], []
    textbook, chunk_maps = attention_module._textbook_attention, attention_module._chunk_maps

    def spy_whole(q, k, *args):
        whole.append(q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2])
        return textbook(q, k, *args)

    def spy_chunk(qs_rows, k, bias_rows, logits, maps):
        chunks.append(logits.numel())
        return chunk_maps(qs_rows, k, bias_rows, logits, maps)

    monkeypatch.setattr(attention_module, '_textbook_attention', spy_whole)
    monkeypatch.setattr(attention_module, '_chunk_maps', spy_chunk)
    model = build_tiny_b(window_block_indexes=(0, 1, 2)).eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 800, 1333))
    assert tuple(tuple(o.shape[1:]) for o in outs) == pyramid_shapes(model, 800, 1333)
    assert max(whole + chunks) <= attention_module.MAP_CHUNK_ELEMENTS
    assert whole and len(chunks) > 2  # windowed blocks in one pass, the global block in chunks
    assert math.prod((1, 4, 4201, 4201)) > attention_module.MAP_CHUNK_ELEMENTS
