"""Linear attention ("Transformers are RNNs", Katharopoulos et al. 2020) and the LoFTR-style layer.

SA-HMR uses these layers on the contact-point tokens of its mesh network: two self-attention layers
among the contact tokens, then one cross-attention layer whose queries are the mesh tokens and whose
keys/values are the contact tokens. Padded contact points (label 0) are removed from the keys and
values by a key mask.

Shapes use B batch, L queries, S keys/values, H heads, D channels per head, C = H * D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sahmr_ros.errors import InputError
from sahmr_ros.networks.precision import at_least_float32, full_precision

LINEAR_ATTENTION_EPS = 1e-6  # added to the normaliser; keeps an all-padded key set finite
LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, as in the official LoFTR layer

__all__ = ["LINEAR_ATTENTION_EPS", "LinearAttentionLayer", "linear_attention"]


def _feature_map(x: torch.Tensor) -> torch.Tensor:
    """Positive kernel feature map phi(x) = elu(x) + 1 (> 0 everywhere)."""
    return F.elu(x) + 1.0


def linear_attention(
    queries: torch.Tensor,
    keys: torch.Tensor,
    values: torch.Tensor,
    kv_mask: torch.Tensor | None = None,
    eps: float = LINEAR_ATTENTION_EPS,
) -> torch.Tensor:
    """Multi-head linear attention with the elu + 1 feature map.

    For every query l and head h, with w_s = phi(q_l) . phi(k_s) over the valid keys s::

        out_l = sum_s w_s v_s / (sum_s w_s + eps)

    Masked keys and values are zeroed, so they contribute nothing; with no valid key at all the
    result is exactly zero (the ``eps`` path), never NaN. As in the official code, the values are
    divided by S before the key-value product and the result multiplied by S afterwards (an fp16
    overflow guard that changes nothing mathematically). The feature maps, products and sums run in
    float32 (or float64) even under autocast: with 500 keys the normaliser ``phi(q) . sum_s phi(k_s)``
    exceeds fp16's 65504 and the result would be 0 (the contact messages would vanish). The result
    has the inputs' dtype.

    Args:
        queries: (B, L, H, D).
        keys: (B, S, H, D).
        values: (B, S, H, D).
        kv_mask: (B, S), bool or {0, 1} float; True / 1 marks a valid key. None: all valid.
        eps: added to the normaliser.

    Returns:
        (B, L, H, D) attended values.

    Raises:
        InputError: shapes do not agree.
    """
    if queries.dim() != 4 or keys.dim() != 4 or values.dim() != 4:
        raise InputError(
            "linear_attention: queries, keys and values must be (B, L, H, D), (B, S, H, D), "
            f"(B, S, H, D); got {tuple(queries.shape)}, {tuple(keys.shape)}, {tuple(values.shape)}"
        )
    if keys.shape != values.shape or keys.shape[0] != queries.shape[0] or keys.shape[2:] != queries.shape[2:]:
        raise InputError(
            "linear_attention: keys and values must be (B, S, H, D) matching queries (B, L, H, D); got "
            f"queries {tuple(queries.shape)}, keys {tuple(keys.shape)}, values {tuple(values.shape)}"
        )
    if kv_mask is not None and tuple(kv_mask.shape) != tuple(keys.shape[:2]):
        raise InputError(
            f"linear_attention: kv_mask must be (B, S) = {tuple(keys.shape[:2])}, got {tuple(kv_mask.shape)}"
        )

    out_dtype = torch.promote_types(torch.promote_types(queries.dtype, keys.dtype), values.dtype)
    with full_precision(queries.device):  # sums over S keys overflow fp16 (65504) and lose bits in bf16
        q_feat = _feature_map(at_least_float32(queries))
        k_feat = _feature_map(at_least_float32(keys))
        values = at_least_float32(values)
        if kv_mask is not None:
            weight = kv_mask.to(k_feat.dtype)[:, :, None, None]  # (B, S, 1, 1)
            k_feat = k_feat * weight
            values = values * weight

        num_keys = values.shape[1]
        values = values / num_keys
        kv = torch.einsum("bshd,bshv->bhdv", k_feat, values)  # (B, H, D, D)
        normaliser = 1.0 / (torch.einsum("blhd,bhd->blh", q_feat, k_feat.sum(dim=1)) + eps)  # (B, L, H)
        out = torch.einsum("blhd,bhdv,blh->blhv", q_feat, kv, normaliser) * num_keys
    return out.to(out_dtype).contiguous()


class LinearAttentionLayer(nn.Module):
    """LoFTR encoder layer with linear attention; returns the message, not x + message.

    message = norm2(mlp([x, norm1(merge(attention(q_proj x, k_proj source, v_proj source)))]))
    with bias-free projections and MLP (2C -> 2C, ReLU, 2C -> C). The caller adds the residual.
    Submodule names follow the official layer (q_proj, k_proj, v_proj, merge, mlp.0, mlp.2, norm1,
    norm2) so that checkpoints load without renames.

    Args:
        d_model: C, channels of x and source.
        num_heads: H; must divide ``d_model``.
        dropout: dropout after norm1 and after norm2 (train mode only); 0 disables it.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0):
        super().__init__()
        if d_model % num_heads != 0:
            raise InputError(f"LinearAttentionLayer: num_heads {num_heads} must divide d_model {d_model}")
        self.d_model = d_model
        self.num_heads = num_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.merge = nn.Linear(d_model, d_model, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(2 * d_model, 2 * d_model, bias=False),
            nn.ReLU(),
            nn.Linear(2 * d_model, d_model, bias=False),
        )
        self.norm1 = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.norm2 = nn.LayerNorm(d_model, eps=LAYER_NORM_EPS)
        self.dropout1 = nn.Dropout(dropout) if dropout > 0.0 else nn.Identity()
        self.dropout2 = nn.Dropout(dropout) if dropout > 0.0 else nn.Identity()

    def forward(
        self, x: torch.Tensor, source: torch.Tensor, source_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Compute the message from ``source`` to ``x``.

        Args:
            x: (B, L, C) query tokens.
            source: (B, S, C) key/value tokens (pass ``x`` itself for self-attention).
            source_mask: (B, S) bool, True for valid source tokens; None: all valid.

        Returns:
            (B, L, C) message; the caller adds it to ``x``.
        """
        batch, num_queries, _ = x.shape
        heads, head_dim = self.num_heads, self.d_model // self.num_heads
        query = self.q_proj(x).view(batch, num_queries, heads, head_dim)
        key = self.k_proj(source).view(batch, source.shape[1], heads, head_dim)
        value = self.v_proj(source).view(batch, source.shape[1], heads, head_dim)
        message = linear_attention(query, key, value, kv_mask=source_mask)  # (B, L, H, D)
        message = self.merge(message.reshape(batch, num_queries, self.d_model))
        message = self.dropout1(self.norm1(message))
        message = self.mlp(torch.cat([x, message], dim=2))
        return self.dropout2(self.norm2(message))
