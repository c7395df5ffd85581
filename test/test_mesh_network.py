"""Tests of the SA-HMR mesh network (sahmr_ros.networks.mesh_network / attention), CPU only."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sahmr_ros.errors import InputError
from sahmr_ros.networks.attention import LINEAR_ATTENTION_EPS, LinearAttentionLayer, linear_attention
from sahmr_ros.networks.mesh_network import (
    OFFICIAL_KEY_PREFIX,
    BertLayer,
    MeshNetwork,
    MeshNetworkConfig,
    MeshNetworkOutput,
    MeshTransformerBlock,
    local_key,
    official_key,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
REFERENCE = SHARED / "reference" / "sahmr_official_state_dict.txt"
NUM_CONTACTS = 20


# --- helpers ---------------------------------------------------------------------------------------
class _TinyBackbone(nn.Module):
    """(B, 3, 224, 224) -> (B, C, 7, 7) in two strided convs."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 16, 8, stride=8), nn.ReLU(), nn.Conv2d(16, channels, 4, stride=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _part_ids() -> torch.Tensor:
    return torch.arange(431) % 8  # every label 0..7 owns vertices


def _small_network(seed: int = 0) -> MeshNetwork:
    torch.manual_seed(seed)
    cfg = MeshNetworkConfig.small()
    return MeshNetwork(cfg, _TinyBackbone(cfg.image_channels), torch.randn(14, 3) * 0.3,
                       torch.randn(431, 3) * 0.3, _part_ids())


def _inputs(batch: int = 2, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, 3, 224, 224, generator=g)
    points = torch.randn(batch, NUM_CONTACTS, 3, generator=g)
    labels = torch.randint(1, 8, (batch, NUM_CONTACTS), generator=g)
    labels[:, NUM_CONTACTS // 2:] = 0  # second half padded
    points[:, NUM_CONTACTS // 2:] = 0.0
    return images, points, labels


def _read_reference() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for line in REFERENCE.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, _ = line.split("\t")
        shapes[key] = tuple(int(s) for s in shape.strip("()").split(",") if s.strip())
    return shapes


# --- checkpoint layout -----------------------------------------------------------------------------
@pytest.mark.skipif(not REFERENCE.exists(), reason=f"reference state-dict listing absent: {REFERENCE}")
def test_official_keys_and_shapes_match_reference():
    reference = _read_reference()
    prefix = OFFICIAL_KEY_PREFIX
    wanted = {
        k: v for k, v in reference.items()
        if k.startswith(prefix)
        and k[len(prefix):].startswith(("trans_encoder.", "conv_learn_tokens.", "upsampling"))
        and ".bert.embeddings." not in k and ".bert.pooler." not in k
    }
    assert len(wanted) == 309
    templates = torch.zeros(14, 3), torch.zeros(431, 3), _part_ids()
    with torch.device("meta"):  # shapes only: no memory for the ~104 M parameters
        net = MeshNetwork(MeshNetworkConfig.official(), nn.Identity(), *templates)
    state = net.state_dict()
    got = {official_key(k): tuple(v.shape) for k, v in state.items()}
    assert got == wanted
    assert all(local_key(official_key(k)) == k for k in state)
    # unused official modules map to nothing
    assert local_key(prefix + "trans_encoder.0.bert.embeddings.word_embeddings.weight") is None
    assert local_key(prefix + "trans_encoder.1.bert.pooler.dense.bias") is None
    assert local_key("net.rcnet.root_net.final.weight") is None
    # no buffers leak into checkpoints
    assert not any("img_mean" in k or "template" in k or "part_" in k for k in state)


# --- linear attention ------------------------------------------------------------------------------
def _linear_attention_loop(q, k, v, mask, eps=LINEAR_ATTENTION_EPS):
    """out_l = sum_s w_s v_s / (sum_s w_s + eps), w_s = phi(q_l).phi(k_s), valid s only, float64."""
    q, k, v = q.double(), k.double(), v.double()
    phi = lambda x: F.elu(x) + 1.0  # noqa: E731
    out = torch.zeros_like(q[..., :1].expand(*q.shape[:3], v.shape[-1])).clone()
    for b in range(q.shape[0]):
        for li in range(q.shape[1]):
            for h in range(q.shape[2]):
                num = torch.zeros(v.shape[-1], dtype=torch.float64)
                den = torch.zeros((), dtype=torch.float64)
                for s in range(k.shape[1]):
                    if mask is not None and not mask[b, s]:
                        continue
                    w = phi(q[b, li, h]) @ phi(k[b, s, h])
                    num += w * v[b, s, h]
                    den += w
                out[b, li, h] = num / (den + eps)
    return out


@pytest.mark.parametrize("masked", [False, True])
def test_linear_attention_equals_per_query_loop(masked):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, n, 3, 4, generator=g, dtype=torch.float64) for n in (5, 7, 7))
    mask = torch.rand(2, 7, generator=g) > 0.4 if masked else None
    got = linear_attention(q, k, v, kv_mask=mask)
    torch.testing.assert_close(got, _linear_attention_loop(q, k, v, mask), rtol=1e-10, atol=1e-12)


def test_key_mask_hides_padded_keys_and_values():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, n, 2, 8, generator=g) for n in (6, 9, 9))
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 5:] = False
    mask[1, :3] = False
    k2, v2 = k.clone(), v.clone()
    k2[~mask] = torch.randn(int((~mask).sum()), 2, 8, generator=g) * 100
    v2[~mask] = torch.randn(int((~mask).sum()), 2, 8, generator=g) * 100
    assert torch.equal(linear_attention(q, k, v, mask), linear_attention(q, k2, v2, mask))
    assert not torch.allclose(linear_attention(q, k, v), linear_attention(q, k2, v2))

    layer = LinearAttentionLayer(16, 2).eval()
    x = torch.randn(2, 6, 16, generator=g)
    src = torch.randn(2, 9, 16, generator=g)
    src2 = src.clone()
    src2[~mask] = torch.randn(int((~mask).sum()), 16, generator=g) * 100
    assert torch.equal(layer(x, src, mask), layer(x, src2, mask))


@pytest.mark.parametrize("autocast", [False, True])
def test_linear_attention_normaliser_stays_finite_in_fp16_with_500_large_keys(autocast):
    """phi(q) . sum_s phi(k_s) over 500 keys of ~20 is ~1.8e6 > 65504 (fp16's largest number): the
    sums run in float32, so fp16 inputs give the float64 loop's result (rtol 2e-3: fp16 output)."""
    g = torch.Generator().manual_seed(5)
    q = (20.0 + torch.rand(1, 4, 2, 8, generator=g)).half()
    k = (20.0 + torch.rand(1, 500, 2, 8, generator=g)).half()
    v = torch.randn(1, 500, 2, 8, generator=g).half()
    mask = torch.ones(1, 500, dtype=torch.bool)
    mask[0, 450:] = False
    normaliser = torch.einsum("blhd,bhd->blh", F.elu(q.double()) + 1, (F.elu(k.double()) + 1).sum(1))
    assert normaliser.min() > 65504  # the case: fp16 cannot hold it
    context = torch.autocast("cpu", dtype=torch.float16) if autocast else contextlib.nullcontext()
    with context:
        out = linear_attention(q, k, v, kv_mask=mask)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()
    expected = _linear_attention_loop(q, k, v, mask)
    assert expected.abs().max() > 1e-2  # the messages do not vanish
    torch.testing.assert_close(out.double(), expected, rtol=2e-3, atol=1e-4)


def test_all_padded_keys_give_the_eps_path_without_nan():
    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, n, 2, 8, generator=g) for n in (6, 4, 4))
    none = torch.zeros(2, 4, dtype=torch.bool)
    out = linear_attention(q, k, v, none)
    assert torch.equal(out, torch.zeros_like(out))

    layer = LinearAttentionLayer(16, 2).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(generator=g)
    x = torch.randn(2, 6, 16, generator=g)
    src = torch.randn(2, 4, 16, generator=g)
    message = layer(x, src, none)
    # attention output 0 -> merge 0 -> norm1(0) = norm1.bias; message = norm2(mlp([x, bias]))
    expected = layer.norm2(layer.mlp(torch.cat([x, layer.norm1.bias.expand(2, 6, 16)], dim=2)))
    assert torch.isfinite(message).all()
    torch.testing.assert_close(message, expected)


def test_linear_attention_layer_matches_formula():
    g = torch.Generator().manual_seed(3)
    layer = LinearAttentionLayer(12, 3).double().eval()
    x = torch.randn(2, 5, 12, generator=g, dtype=torch.float64)
    src = torch.randn(2, 7, 12, generator=g, dtype=torch.float64)
    mask = torch.rand(2, 7, generator=g) > 0.3
    heads = lambda t: t.view(2, -1, 3, 4)  # noqa: E731
    att = _linear_attention_loop(heads(x @ layer.q_proj.weight.T), heads(src @ layer.k_proj.weight.T),
                                 heads(src @ layer.v_proj.weight.T), mask)
    msg = F.layer_norm(att.reshape(2, 5, 12) @ layer.merge.weight.T, (12,), eps=1e-5)
    hidden = torch.relu(torch.cat([x, msg], 2) @ layer.mlp[0].weight.T) @ layer.mlp[2].weight.T
    expected = F.layer_norm(hidden, (12,), eps=1e-5)
    torch.testing.assert_close(layer(x, src, mask), expected, rtol=1e-9, atol=1e-10)


def test_linear_attention_rejects_bad_shapes():
    q = torch.zeros(1, 2, 2, 4)
    with pytest.raises(InputError, match="kv_mask"):
        linear_attention(q, q, q, torch.ones(1, 3, dtype=torch.bool))
    with pytest.raises(InputError, match="keys and values"):
        linear_attention(q, q, torch.zeros(1, 3, 2, 4))


# --- BERT layer -------------------------------------------------------------------------------------
def _manual_bert_layer(layer: BertLayer, x: torch.Tensor, heads: int, gelu) -> torch.Tensor:
    def lin(m, t):
        return t @ m.weight.T + m.bias

    def ln(m, t):
        mu = t.mean(-1, keepdim=True)
        var = ((t - mu) ** 2).mean(-1, keepdim=True)
        return (t - mu) / torch.sqrt(var + m.eps) * m.weight + m.bias

    sa = layer.attention.self
    b, n, c = x.shape
    d = c // heads
    split = lambda t: t.view(b, n, heads, d).permute(0, 2, 1, 3)  # noqa: E731
    q, k, v = split(lin(sa.query, x)), split(lin(sa.key, x)), split(lin(sa.value, x))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    context = (probs @ v).permute(0, 2, 1, 3).reshape(b, n, c)
    a = ln(layer.attention.output.LayerNorm, lin(layer.attention.output.dense, context) + x)
    inter = gelu(lin(layer.intermediate.dense, a))
    return ln(layer.output.LayerNorm, lin(layer.output.dense, inter) + a)


def test_bert_layer_is_post_ln_with_erf_gelu():
    torch.manual_seed(4)
    layer = BertLayer(hidden=16, num_heads=4, intermediate=32, dropout=0.1, eps=1e-12).double().eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    erf_gelu = lambda t: 0.5 * t * (1.0 + torch.erf(t / math.sqrt(2.0)))  # noqa: E731
    tanh_gelu = lambda t: 0.5 * t * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (t + 0.044715 * t**3)))  # noqa: E731
    got = layer(x)
    torch.testing.assert_close(got, _manual_bert_layer(layer, x, 4, erf_gelu), rtol=1e-10, atol=1e-10)
    assert (got - _manual_bert_layer(layer, x, 4, tanh_gelu)).abs().max() > 1e-5  # approximations differ
    # train mode applies dropout
    layer.train()
    assert not torch.allclose(layer(x), got)


# --- transformer block ------------------------------------------------------------------------------
def _small_block(seed: int = 5) -> tuple[MeshTransformerBlock, torch.Tensor]:
    torch.manual_seed(seed)
    cfg = MeshNetworkConfig.small()
    net = MeshNetwork(cfg, nn.Identity(), torch.zeros(14, 3), torch.zeros(431, 3), _part_ids())
    return net.trans_encoder[0].eval(), net.part_pooling


def test_contact_position_term_uses_431_indices_without_joint_offset():
    block, pooling = _small_block()
    part_ids = _part_ids()
    g = torch.Generator().manual_seed(6)
    mesh = torch.randn(1, 445, 259, generator=g)
    contact = torch.randn(1, 8, 259, generator=g)
    labels = torch.arange(8)[None]  # one token per label
    mesh_emb, contact_emb = block.bert.embed(mesh, contact, labels, pooling)
    pos = block.bert.position_embeddings.weight
    emb = block.bert.img_embedding
    torch.testing.assert_close(mesh_emb, emb(mesh) + pos[:445])
    term = (contact_emb - emb(contact))[0]  # (8, H)
    torch.testing.assert_close(term[0], torch.zeros_like(term[0]), atol=1e-6, rtol=0)
    for p in range(1, 8):
        idx = torch.nonzero(part_ids == p).flatten()
        torch.testing.assert_close(term[p], pos[idx].mean(0), atol=1e-6, rtol=1e-5)
        assert not torch.allclose(term[p], pos[idx + 14].mean(0), atol=1e-4)


def test_heads_are_shared_between_token_types():
    block, pooling = _small_block()
    assert sum(1 for n, _ in block.named_modules() if n.endswith("cls_head")) == 1
    assert sum(1 for n, _ in block.named_modules() if n.endswith("residual")) == 1
    g = torch.Generator().manual_seed(7)
    mesh = torch.randn(2, 445, 259, generator=g)
    contact = torch.randn(2, 6, 259, generator=g)
    labels = torch.tensor([[1, 2, 3, 0, 0, 0], [7, 6, 5, 4, 0, 0]])
    with torch.no_grad():
        block.cls_head.weight.zero_()
        block.cls_head.bias.copy_(torch.arange(64.0))
        mesh_out, contact_out = block(mesh, contact, labels, labels != 0, pooling)
        torch.testing.assert_close(mesh_out - block.residual(mesh), torch.arange(64.0).expand(2, 445, 64))
        torch.testing.assert_close(contact_out - block.residual(contact), torch.arange(64.0).expand(2, 6, 64))


def test_block_padded_contacts_do_not_affect_mesh_tokens():
    block, pooling = _small_block()
    g = torch.Generator().manual_seed(8)
    mesh = torch.randn(1, 445, 259, generator=g)
    contact = torch.randn(1, 6, 259, generator=g)
    labels = torch.tensor([[3, 1, 0, 0, 0, 0]])
    contact2 = contact.clone()
    contact2[:, 2:] = torch.randn(1, 4, 259, generator=g) * 10
    with torch.no_grad():
        a, _ = block(mesh, contact, labels, labels != 0, pooling)
        b, _ = block(mesh, contact2, labels, labels != 0, pooling)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# --- full network ------------------------------------------------------------------------------------
def test_small_forward_shapes_finite_and_inputs_untouched():
    net = _small_network().eval()
    images, points, labels = _inputs()
    copies = [t.clone() for t in (images, points, labels)]
    with torch.no_grad():
        out = net(images, points, labels)
    assert isinstance(out, MeshNetworkOutput)
    assert out.vertices.shape == (2, 6890, 3)
    assert out.vertices_mid.shape == (2, 1723, 3)
    assert out.vertices_coarse.shape == (2, 431, 3)
    assert out.joints14_tokens.shape == (2, 14, 3)
    assert out.contact_points.shape == (2, NUM_CONTACTS, 3)
    for t in (out.vertices, out.vertices_mid, out.vertices_coarse, out.joints14_tokens, out.contact_points):
        assert torch.isfinite(t).all()
    for before, after in zip(copies, (images, points, labels)):
        assert torch.equal(before, after)


def test_all_contacts_padded_is_finite():
    net = _small_network().eval()
    images, points, labels = _inputs()
    with torch.no_grad():
        out = net(images, torch.zeros_like(points), torch.zeros_like(labels))
    assert torch.isfinite(out.vertices).all() and torch.isfinite(out.contact_points).all()


def test_inference_shortcuts_equal_the_training_path():
    """With gradients off: trailing padded contacts are skipped and the two upsamplings composed."""
    net = _small_network().eval()
    images, points, labels = _inputs(batch=3)
    labels[0, 5:] = 0  # rows with different amounts of trailing padding; the batch's last valid column is 30
    labels[1, 30:] = 0
    labels[2, 3:9] = 0  # padding between valid tokens stays
    with torch.enable_grad():  # the full computation: every column, the two maps in turn
        ref = net(images, points, labels)
    with torch.inference_mode():
        fast = net(images, points, labels)
    assert fast.contact_points.shape == ref.contact_points.shape
    for name in ("vertices", "vertices_mid", "vertices_coarse", "joints14_tokens"):
        torch.testing.assert_close(getattr(fast, name), getattr(ref, name).detach(), rtol=1e-5, atol=1e-6)
    valid = labels != 0
    torch.testing.assert_close(fast.contact_points[valid], ref.contact_points.detach()[valid], rtol=1e-5, atol=1e-6)
    assert torch.equal(fast.contact_points[:, 30:], torch.zeros_like(fast.contact_points[:, 30:]))


@pytest.mark.parametrize("heads", [4, 1])  # head widths 16 and 64
def test_unfused_bf16_attention_matches_the_fused_kernel(heads):
    """CPU bf16 inference takes two GEMMs + softmax instead of SDPA: same attention, bf16 round-off."""
    from sahmr_ros.networks.mesh_network import _SelfAttention
    from sahmr_ros.networks.precision import store_weights_in

    torch.manual_seed(3)
    attention = _SelfAttention(64, heads, dropout=0.1).eval()
    x = torch.randn(2, 445, 64)
    with torch.no_grad():
        ref = attention(x)  # float32, fused kernel
    store_weights_in([attention], torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with torch.enable_grad():
            fused = attention(x).float()  # gradients on: the fused kernel
        with torch.inference_mode():
            unfused = attention(x).float()
    scale = ref.abs().max()
    assert (fused - ref).abs().max() < 2e-2 * scale
    assert (unfused - ref).abs().max() < 2e-2 * scale
    assert (unfused - fused).abs().max() < 2e-2 * scale
    assert not torch.equal(unfused, fused)  # the two forms really ran


def test_composed_upsampling_follows_new_weights():
    """The cached composed map is rebuilt when either upsampling layer's weights change."""
    net = _small_network().eval()
    images, points, labels = _inputs()
    with torch.no_grad():
        before = net(images, points, labels).vertices
        net.upsampling2.bias += 1.0  # in place: the same storage, a new version
        after = net(images, points, labels).vertices
    torch.testing.assert_close(after, before + 1.0, rtol=0, atol=1e-5)


def test_eval_is_deterministic():
    net = _small_network().eval()
    images, points, labels = _inputs()
    with torch.no_grad():
        a, b = net(images, points, labels), net(images, points, labels)
    assert torch.equal(a.vertices, b.vertices)
    assert torch.equal(a.contact_points, b.contact_points)


def test_gradients_are_finite():
    net = _small_network().train()
    images, points, labels = _inputs()
    out = net(images, points, labels)
    mask = (labels != 0)[..., None]
    loss = out.vertices.abs().mean() + out.joints14_tokens.abs().mean() + (out.contact_points * mask).abs().mean()
    loss.backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert net.trans_encoder[0].bert.encoder.cross_attn.q_proj.weight.grad.abs().sum() > 0


def test_input_validation_names_the_argument():
    net = _small_network().eval()
    images, points, labels = _inputs()
    with pytest.raises(InputError, match="images"):
        net(images[:, :, :100], points, labels)
    with pytest.raises(InputError, match="contact_points"):
        net(images, points[..., :2], labels)
    with pytest.raises(InputError, match="contact_labels"):
        net(images, points, labels[:1])
    with pytest.raises(InputError, match="contact_labels"):
        net(images, points, labels.int())
    with pytest.raises(InputError, match="contact_labels"):
        net(images, points, labels + 8)
    cfg = MeshNetworkConfig.small()
    with pytest.raises(InputError, match="template_vertices431"):
        MeshNetwork(cfg, nn.Identity(), torch.zeros(14, 3), torch.zeros(430, 3), _part_ids())
    with pytest.raises(InputError, match="part_ids_431"):
        MeshNetwork(cfg, nn.Identity(), torch.zeros(14, 3), torch.zeros(431, 3), torch.zeros(431, dtype=torch.long))
    with pytest.raises(InputError, match="backbone"):
        MeshNetwork(cfg, nn.Identity(), torch.zeros(14, 3), torch.zeros(431, 3), _part_ids())(images, points, labels)
    with pytest.raises(InputError, match="input_dims"):
        MeshNetworkConfig(image_channels=256)


def test_part_vertex_indices_and_pooling():
    net = _small_network()
    idx = net.part_vertex_indices
    assert idx[0].numel() == 0
    for p in range(1, 8):
        assert torch.equal(idx[p], torch.nonzero(_part_ids() == p).flatten())
        row = torch.zeros(431)
        row[idx[p]] = 1.0 / idx[p].numel()
        torch.testing.assert_close(net.part_pooling[p], row)
