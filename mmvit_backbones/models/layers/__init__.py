from timm.layers import LayerNorm2d, Mlp  # the same computations and parameter names as ours were: reused

from .attention import attention, chunked_attention, naive_attention_mode, share_bias_gradient
from .memory_format import channels_last_conv_weights, tokens_to_map
from .patch_conv import PatchConv2d, PatchConvTranspose2d
from .pyramid import DoubleResolution, SimpleFeaturePyramid
from .resize import SizeCache, resize_1d_table, resize_dense_bias, resize_grid_embed, resize_relative_position_table
from .token_mixing import TOKEN_MIXING_MODES, mix_tokens, resize_token_grid, window_token_mixing
from .traceable import Size2d
from .transformer import ViTAttention, ViTBlock, init_conv_fan_out, init_linear_and_layernorm

__all__ = ['attention', 'chunked_attention', 'naive_attention_mode', 'DoubleResolution', 'LayerNorm2d',
           'SimpleFeaturePyramid', 'SizeCache', 'resize_1d_table', 'resize_dense_bias', 'resize_grid_embed',
           'resize_relative_position_table',
           'Mlp', 'ViTAttention', 'ViTBlock', 'init_conv_fan_out', 'init_linear_and_layernorm']
__all__ += ['TOKEN_MIXING_MODES', 'mix_tokens', 'resize_token_grid', 'window_token_mixing']
__all__ += ['share_bias_gradient']
__all__ += ['Size2d']
__all__ += ['channels_last_conv_weights', 'tokens_to_map', 'PatchConv2d', 'PatchConvTranspose2d']
