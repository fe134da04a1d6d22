from .attention import attention, chunked_attention, naive_attention_mode, share_bias_gradient
from .memory_format import channels_last_conv_weights, tokens_to_map
from .patch_conv import PatchConv2d, PatchConvTranspose2d
from .pyramid import DoubleResolution, LayerNorm2d, SimpleFeaturePyramid
from .resize import (SizeCache, resize_1d_table, resize_dense_bias, resize_grid_embed,
                     resize_relative_position_table)
from .transformer import Mlp, ViTAttention, ViTBlock, init_conv_fan_out, init_linear_and_layernorm
from .token_mixing import TOKEN_MIXING_MODES, mix_tokens, resize_token_grid, window_token_mixing

__all__ = ['attention', 'chunked_attention', 'naive_attention_mode', 'DoubleResolution', 'LayerNorm2d',
           'SimpleFeaturePyramid', 'SizeCache', 'resize_1d_table', 'resize_dense_bias', 'resize_grid_embed',
           'resize_relative_position_table',
           'Mlp', 'ViTAttention', 'ViTBlock', 'init_conv_fan_out', 'init_linear_and_layernorm']
__all__ += ['TOKEN_MIXING_MODES', 'mix_tokens', 'resize_token_grid', 'window_token_mixing']
__all__ += ['share_bias_gradient']
__all__ += ['channels_last_conv_weights', 'tokens_to_map', 'PatchConv2d', 'PatchConvTranspose2d']
