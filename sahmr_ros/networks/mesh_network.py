"""SA-HMR's mesh network: METRO with scene contact points ("METRO enhanced", Stage B of the paper).

The network regresses a root-relative SMPL-topology mesh from one 224x224 person crop and the scene
points the person touches (contact points, labelled by body part, from RCNet):

1. image tokens: backbone feature map (B, C, 7, 7) -> 49 tokens -> ``conv_learn_tokens`` (Conv1d,
   49 -> 445 token positions) -> (B, 445, C);
2. mesh tokens (B, 445, 3 + C) = [template xyz, image token] for 14 joints then 431 coarse vertices;
   contact tokens (B, S, 3 + C) = [contact xyz, part token], the part token being the mean of the
   image tokens of that part's coarse vertices (label 0, padding: zeros);
3. three transformer blocks (hidden 1024 / 256 / 128) map both token sets to 512 / 128 / 3 channels;
4. the 431 coarse vertices (3-d outputs of tokens 14..444) are upsampled over the vertex axis by two
   learned linear maps, 431 -> 1723 -> 6890.

Frame: every coordinate is in metres, in the camera optical frame (x right, y down, z forward) with
the origin at the (refined) pelvis; the caller adds the pelvis back for camera-frame vertices.

One block (:class:`MeshTransformerBlock`)::

    mesh_emb    = img_embedding(mesh_in) + position_embeddings[0..444]
    contact_emb = img_embedding(contact_in) + mean(position_embeddings[part's 431-vertex ids])
    h           = 4 post-LN BERT layers over mesh_emb (full self-attention, 445 tokens)
    c           = contact_emb + msg, twice, msg = linear self-attention over contacts (key mask)
    h           = h + linear cross-attention(queries h, keys/values c, key mask)
    outputs     = cls_head(h) + residual(mesh_in),  cls_head(c) + residual(contact_in)

The contact position term indexes ``position_embeddings`` with the 431-vertex ids *without* the +14
joint offset (so partly with joint rows): a quirk of the official code that the trained weights
depend on, kept on purpose.

Parameter names equal those of the official release (zju3dv/SA-HMR, ``METRO_enhanced``) except for
the two linear-attention containers, renamed for readability; :data:`OFFICIAL_KEY_RENAMES`,
:func:`official_key` and :func:`local_key` translate. The official BERT word / token-type
embeddings, embedding LayerNorm and pooler are never used there and are not built here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sahmr_ros import constants
from sahmr_ros.errors import InputError
from sahmr_ros.networks.attention import LinearAttentionLayer
from sahmr_ros.networks.fusion import derived
from sahmr_ros.networks.precision import at_least_float32, full_precision

__all__ = [
    "OFFICIAL_KEY_PREFIX",
    "OFFICIAL_KEY_RENAMES",
    "OFFICIAL_UNUSED_KEY_PARTS",
    "BertLayer",
    "MeshNetwork",
    "MeshNetworkConfig",
    "MeshNetworkOutput",
    "MeshTransformerBlock",
    "local_key",
    "official_key",
]

# --- checkpoint key translation --------------------------------------------------------------------
OFFICIAL_KEY_PREFIX = "net.metro_enhanced."  # prefix of this network's keys in ckpt["network"]
# (local fragment, official fragment); applied to every key of MeshNetwork.state_dict().
OFFICIAL_KEY_RENAMES = (
    (".bert.encoder.contact_self_attn.", ".bert.encoder.linear_cp."),
    (".bert.encoder.cross_attn.", ".bert.encoder.loftr_layer."),
)
# Official keys with these fragments belong to modules the official forward never calls.
OFFICIAL_UNUSED_KEY_PARTS = (".bert.embeddings.", ".bert.pooler.")


def official_key(name: str) -> str:
    """Official checkpoint key (with ``net.metro_enhanced.``) of a ``MeshNetwork.state_dict()`` key."""
    for local, official in OFFICIAL_KEY_RENAMES:
        name = name.replace(local, official)
    return OFFICIAL_KEY_PREFIX + name


def local_key(name: str) -> str | None:
    """``MeshNetwork.state_dict()`` key of an official key; None for other networks and unused modules."""
    if not name.startswith(OFFICIAL_KEY_PREFIX) or any(p in name for p in OFFICIAL_UNUSED_KEY_PARTS):
        return None
    name = name[len(OFFICIAL_KEY_PREFIX):]
    for local, official in OFFICIAL_KEY_RENAMES:
        name = name.replace(official, local)
    return name


# --- configuration ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class MeshNetworkConfig:
    """Hyper-parameters of :class:`MeshNetwork`; ``official()`` reproduces the released model.

    Attributes:
        input_dims: token channels entering each block; the first is 3 + ``image_channels``.
        hidden_dims: BERT hidden size of each block.
        output_dims: token channels leaving each block; ``input_dims[i + 1]``, and 3 for the last.
        num_layers: BERT layers per block.
        num_heads: attention heads (BERT and linear attention) per block.
        intermediate_size: BERT feed-forward width (3072 in every official block).
        max_positions: rows of each block's learned position embedding.
        layer_norm_eps: BERT LayerNorm epsilon.
        dropout: BERT dropout (embeddings, attention probabilities, hidden states), train mode only.
        cross_attention_dropout: dropout inside the contact -> mesh cross-attention layer.
        initializer_range: std of the normal init of the blocks' Linear / Embedding weights.
        image_size: side of the square input crop, pixels.
        image_channels: C, channels of the backbone's feature map.
        image_grid_tokens: cells of the backbone's feature map (7 x 7).
        num_joints: joint tokens before the vertex tokens.
        num_vertices_coarse, num_vertices_mid, num_vertices: SMPL mesh levels 2, 1 and 0.
        num_contact_classes: contact labels, 0 meaning "no contact / padding".
    """

    input_dims: tuple[int, ...] = (2051, 512, 128)
    hidden_dims: tuple[int, ...] = (1024, 256, 128)
    output_dims: tuple[int, ...] = (512, 128, 3)
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 3072
    max_positions: int = 512
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    cross_attention_dropout: float = 0.1
    initializer_range: float = 0.02
    image_size: int = constants.CROP_SIZE_PX
    image_channels: int = 2048
    image_grid_tokens: int = 49
    num_joints: int = constants.NUM_JOINTS14
    num_vertices_coarse: int = constants.NUM_VERTICES_COARSE
    num_vertices_mid: int = constants.NUM_VERTICES_MID
    num_vertices: int = constants.NUM_VERTICES
    num_contact_classes: int = constants.NUM_CONTACT_CLASSES

    def __post_init__(self):
        n = len(self.hidden_dims)
        if n == 0 or len(self.input_dims) != n or len(self.output_dims) != n:
            raise InputError(
                "MeshNetworkConfig: input_dims, hidden_dims and output_dims need one entry per block, got "
                f"{self.input_dims}, {self.hidden_dims}, {self.output_dims}"
            )
        if self.input_dims[0] != 3 + self.image_channels:
            raise InputError(
                f"MeshNetworkConfig.input_dims[0] must be 3 + image_channels = {3 + self.image_channels}, "
                f"got {self.input_dims[0]}"
            )
        if tuple(self.input_dims[1:]) != tuple(self.output_dims[:-1]) or self.output_dims[-1] != 3:
            raise InputError(
                "MeshNetworkConfig.output_dims must be input_dims[1:] + (3,), got "
                f"output_dims {self.output_dims} for input_dims {self.input_dims}"
            )
        for h in self.hidden_dims:
            if h % self.num_heads != 0:
                raise InputError(f"MeshNetworkConfig: num_heads {self.num_heads} must divide hidden size {h}")
        if self.max_positions < self.num_tokens:
            raise InputError(
                f"MeshNetworkConfig.max_positions {self.max_positions} < {self.num_tokens} mesh tokens"
            )

    @property
    def num_tokens(self) -> int:
        """Mesh tokens: joints then coarse vertices (445)."""
        return self.num_joints + self.num_vertices_coarse

    @classmethod
    def official(cls) -> MeshNetworkConfig:
        """Return the released SA-HMR mesh network (HRNet-W64 features, 2048 channels)."""
        return cls()

    @classmethod
    def small(cls) -> MeshNetworkConfig:
        """Return the same design, narrow: for tests and quick experiments (not checkpoint compatible)."""
        return cls(
            input_dims=(3 + 256, 64, 32),
            hidden_dims=(64, 32, 32),
            output_dims=(64, 32, 3),
            num_layers=2,
            num_heads=4,
            intermediate_size=128,
            image_channels=256,
        )


@dataclass(frozen=True)
class MeshNetworkOutput:
    """Outputs of :class:`MeshNetwork`, metres, camera orientation, origin at the pelvis.

    Attributes:
        vertices: (B, 6890, 3) full-resolution mesh (float32 or float64, also under autocast).
        vertices_mid: (B, 1723, 3) mesh level 1 (same dtype).
        vertices_coarse: (B, 431, 3) mesh level 2 (the transformer's vertex tokens, same dtype).
        joints14_tokens: (B, 14, 3) 3-d outputs of the joint tokens (METRO's joint estimate; the
            official pipeline regresses joints from ``vertices`` instead).
        contact_points: (B, S, 3) reconstructed contact points (auxiliary loss); rows whose
            label is 0 are padding and carry no meaning (with gradients off, the padding after the
            last valid column of the batch is not computed and reads zero).
    """

    vertices: torch.Tensor
    vertices_mid: torch.Tensor
    vertices_coarse: torch.Tensor
    joints14_tokens: torch.Tensor
    contact_points: torch.Tensor


# --- BERT layer --------------------------------------------------------------------------------------
class _SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention with biased q/k/v projections."""

    def __init__(self, hidden: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads = num_heads
        self.dropout_p = dropout
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, H) -> (B, N, H) context (heads concatenated), full attention, no mask."""
        batch, num, hidden = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(batch, num, self.num_heads, hidden // self.num_heads).transpose(1, 2)

        query, key, value = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        if not self.training and _unfused_attention_is_faster(query):
            scores = (query * query.shape[-1] ** -0.5) @ key.transpose(-1, -2)  # (B, heads, N, N)
            context = torch.softmax(scores, dim=-1) @ value
        else:
            context = F.scaled_dot_product_attention(
                query, key, value, dropout_p=self.dropout_p if self.training else 0.0
            )  # (B, heads, N, H / heads)
        return context.transpose(1, 2).reshape(batch, num, hidden)


def _unfused_attention_is_faster(query: torch.Tensor) -> bool:
    """Whether inference attention on ``query`` (B, heads, N, D) should skip torch's fused kernel.

    On CPU in bf16, two bf16 GEMMs + softmax beat torch's fused attention kernel:
    2x at head width 256 (the official block 1), 1.6x at 64, 1.3x at 32, 1.0-1.1x at 16, 1.2-1.6x at 8
    (one thread, 445 tokens, batch 1 and 4; ``python bench/attention.py``). Not in float32 (slower),
    nor with gradients (the fused kernel's backward, and dropout, are needed there).
    """
    return query.device.type == "cpu" and query.dtype == torch.bfloat16 and not torch.is_grad_enabled()


class _DenseAddNorm(nn.Module):
    """LayerNorm(residual + dropout(dense(x))): the post-LN output of a BERT sub-layer."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, eps: float):
        super().__init__()
        self.dense = nn.Linear(in_dim, hidden)
        self.LayerNorm = nn.LayerNorm(hidden, eps=eps)  # official (TF-derived) name
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class _Attention(nn.Module):
    def __init__(self, hidden: int, num_heads: int, dropout: float, eps: float):
        super().__init__()
        self.self = _SelfAttention(hidden, num_heads, dropout)
        self.output = _DenseAddNorm(hidden, hidden, dropout, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x), x)


class _Intermediate(nn.Module):
    def __init__(self, hidden: int, intermediate: int):
        super().__init__()
        self.dense = nn.Linear(hidden, intermediate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x), approximate="none")  # exact erf GELU, as BERT


class BertLayer(nn.Module):
    """One post-LN BERT encoder layer (full self-attention, exact erf GELU).

    ``a = LN(x + drop(W_o attn(x)))``, ``y = LN(a + drop(W_2 gelu(W_1 a)))``.
    Submodule names follow the original BERT so official weights load unchanged.

    Args:
        hidden: token channels.
        num_heads: attention heads; must divide ``hidden``.
        intermediate: feed-forward width.
        dropout: dropout on attention probabilities and sub-layer outputs (train mode).
        eps: LayerNorm epsilon.
    """

    def __init__(self, hidden: int, num_heads: int, intermediate: int, dropout: float, eps: float):
        super().__init__()
        self.attention = _Attention(hidden, num_heads, dropout, eps)
        self.intermediate = _Intermediate(hidden, intermediate)
        self.output = _DenseAddNorm(intermediate, hidden, dropout, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, N, hidden) -> (B, N, hidden)."""
        attended = self.attention(x)
        return self.output(self.intermediate(attended), attended)


# --- transformer block -------------------------------------------------------------------------------
class _BlockEncoder(nn.Module):
    """BERT layers over the mesh tokens, contact self-attention, contact -> mesh cross-attention."""

    def __init__(self, config: MeshNetworkConfig, hidden: int):
        super().__init__()
        self.layer = nn.ModuleList(
            BertLayer(hidden, config.num_heads, config.intermediate_size, config.dropout, config.layer_norm_eps)
            for _ in range(config.num_layers)
        )
        self.contact_self_attn = nn.ModuleList(
            LinearAttentionLayer(hidden, config.num_heads) for _ in range(2)
        )
        self.cross_attn = LinearAttentionLayer(hidden, config.num_heads, config.cross_attention_dropout)

    def forward(
        self, mesh: torch.Tensor, contact: torch.Tensor, contact_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N, H), (B, S, H), (B, S) bool -> (B, N, H), (B, S, H)."""
        for layer in self.layer:
            mesh = layer(mesh)
        for layer in self.contact_self_attn:
            contact = contact + layer(contact, contact, contact_mask)
        mesh = mesh + self.cross_attn(mesh, contact, contact_mask)
        return mesh, contact


class _BlockTransformer(nn.Module):
    """Embeddings and encoder of a block (official ``CPOSE_Encoder``, minus its unused BERT parts)."""

    def __init__(self, config: MeshNetworkConfig, in_dim: int, hidden: int):
        super().__init__()
        self.num_tokens = config.num_tokens
        self.num_vertices_coarse = config.num_vertices_coarse
        self.img_embedding = nn.Linear(in_dim, hidden)
        self.position_embeddings = nn.Embedding(config.max_positions, hidden)
        self.dropout = nn.Dropout(config.dropout)
        self.encoder = _BlockEncoder(config, hidden)

    def embed(
        self,
        mesh: torch.Tensor,
        contact: torch.Tensor,
        contact_labels: torch.Tensor,
        part_pooling: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project tokens to the hidden size and add the position terms (before dropout).

        Args:
            mesh: (B, N, D_in) mesh tokens.
            contact: (B, S, D_in) contact tokens.
            contact_labels: (B, S) int64 part labels.
            part_pooling: (P, 431) row p averages the part-p coarse vertices (row 0 zeros).

        Returns:
            (B, N, H) and (B, S, H) embeddings.
        """
        positions = self.position_embeddings.weight  # (max_positions, H)
        mesh_emb = self.img_embedding(mesh) + positions[: self.num_tokens]
        # Official quirk: the part's 431-vertex ids index the table directly, without the joint offset.
        part_positions = part_pooling @ positions[: self.num_vertices_coarse]  # (P, H)
        contact_emb = self.img_embedding(contact) + part_positions[contact_labels]
        return mesh_emb, contact_emb

    def forward(
        self,
        mesh: torch.Tensor,
        contact: torch.Tensor,
        contact_labels: torch.Tensor,
        contact_mask: torch.Tensor,
        part_pooling: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        mesh_emb, contact_emb = self.embed(mesh, contact, contact_labels, part_pooling)
        return self.encoder(self.dropout(mesh_emb), self.dropout(contact_emb), contact_mask)


class MeshTransformerBlock(nn.Module):
    """One of the three transformer blocks (official ``CPOSE``); see the module docstring.

    Args:
        config: network configuration.
        index: which block (0, 1, 2), selecting input / hidden / output sizes.
    """

    def __init__(self, config: MeshNetworkConfig, index: int):
        super().__init__()
        in_dim = config.input_dims[index]
        hidden = config.hidden_dims[index]
        out_dim = config.output_dims[index]
        self.bert = _BlockTransformer(config, in_dim, hidden)
        self.cls_head = nn.Linear(hidden, out_dim)  # shared by mesh and contact tokens
        self.residual = nn.Linear(in_dim, out_dim)  # shared by mesh and contact tokens
        self.apply(lambda m: _init_bert_weights(m, config.initializer_range))

    def forward(
        self,
        mesh: torch.Tensor,
        contact: torch.Tensor,
        contact_labels: torch.Tensor,
        contact_mask: torch.Tensor,
        part_pooling: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Transform both token sets.

        Args:
            mesh: (B, N, D_in) mesh tokens, N = 445.
            contact: (B, S, D_in) contact tokens.
            contact_labels: (B, S) int64 part labels, 0 = padding.
            contact_mask: (B, S) bool, ``contact_labels != 0``.
            part_pooling: (P, 431) part averaging matrix (row 0 zeros).

        Returns:
            (B, N, D_out) and (B, S, D_out) tokens.
        """
        mesh_hidden, contact_hidden = self.bert(mesh, contact, contact_labels, contact_mask, part_pooling)
        mesh_out = self.cls_head(mesh_hidden) + self.residual(mesh)
        contact_out = self.cls_head(contact_hidden) + self.residual(contact)
        return mesh_out, contact_out


def _init_bert_weights(module: nn.Module, std: float) -> None:
    """BERT init, as the official blocks: N(0, std) weights, zero biases, unit LayerNorms."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, mean=0.0, std=std)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
    if isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --- the network -------------------------------------------------------------------------------------
class MeshNetwork(nn.Module):
    """SA-HMR mesh network (official ``METRO_enhanced``).

    Args:
        config: hyper-parameters; ``MeshNetworkConfig.official()`` for the released model.
        backbone: maps ImageNet-normalised images (B, 3, S, S) to (B, C, h, w) with
            C = ``config.image_channels`` and h * w = ``config.image_grid_tokens``
            (the lead's HRNet-W64 ``head="features"`` for the official model).
        template_joints14: (14, 3) template joints, metres, pelvis-relative, camera orientation.
        template_vertices431: (431, 3) template coarse vertices, same frame.
        part_ids_431: (431,) integer contact label (0..7) of every coarse vertex; every label
            1..7 must own at least one vertex.

    Raises:
        InputError: a template or the part ids have the wrong shape, dtype or values.
    """

    def __init__(
        self,
        config: MeshNetworkConfig,
        backbone: nn.Module,
        template_joints14: torch.Tensor,
        template_vertices431: torch.Tensor,
        part_ids_431: torch.Tensor,
    ):
        super().__init__()
        self.config = config
        cfg = config
        _check_shape("template_joints14", template_joints14, (cfg.num_joints, 3), floating=True)
        _check_shape("template_vertices431", template_vertices431, (cfg.num_vertices_coarse, 3), floating=True)
        _check_shape("part_ids_431", part_ids_431, (cfg.num_vertices_coarse,), integer=True)

        self.backbone = backbone
        self.conv_learn_tokens = nn.Conv1d(cfg.image_grid_tokens, cfg.num_tokens, kernel_size=1)
        self.trans_encoder = nn.ModuleList(MeshTransformerBlock(cfg, i) for i in range(len(cfg.hidden_dims)))
        self.upsampling = nn.Linear(cfg.num_vertices_coarse, cfg.num_vertices_mid)
        self.upsampling2 = nn.Linear(cfg.num_vertices_mid, cfg.num_vertices)
        self.vertex_upsampling = VertexUpsampling()  # applies the two maps above (no parameters)

        device = template_vertices431.device
        mean = torch.tensor(constants.IMAGENET_MEAN, dtype=torch.float32, device=device)
        std = torch.tensor(constants.IMAGENET_STD, dtype=torch.float32, device=device)
        template = torch.cat([template_joints14, template_vertices431], dim=0).to(torch.float32)
        self.register_buffer("img_mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("img_std", std.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("template_tokens", template.clone(), persistent=False)  # (445, 3)
        self.register_buffer("part_ids_431", part_ids_431.to(torch.int64).clone(), persistent=False)
        self.register_buffer(
            "part_pooling", _part_pooling(part_ids_431, cfg.num_contact_classes), persistent=False
        )  # (P, 431)

    @property
    def part_vertex_indices(self) -> list[torch.Tensor]:
        """Per label p (0..P-1), the indices of the coarse vertices of part p (label 0: empty)."""
        return [
            torch.nonzero(self.part_ids_431 == p).flatten() if p > 0 else self.part_ids_431.new_zeros(0)
            for p in range(self.config.num_contact_classes)
        ]

    def forward(
        self, images: torch.Tensor, contact_points: torch.Tensor, contact_labels: torch.Tensor
    ) -> MeshNetworkOutput:
        """Regress the root-relative mesh.

        Args:
            images: (B, 3, 224, 224) RGB crops in [0, 1] (ImageNet normalisation happens here).
            contact_points: (B, S, 3) contact points, metres, camera orientation, origin at the
                pelvis; rows with label 0 are padding.
            contact_labels: (B, S) int64 part labels in 0..7, 0 = padding (masked out).

        Returns:
            :class:`MeshNetworkOutput`, all coordinates pelvis-relative, camera orientation.

        Raises:
            InputError: an argument (or the backbone's output) has the wrong shape, dtype or values.
        """
        cfg = self.config
        batch = self._check_inputs(images, contact_points, contact_labels)

        feature_map = self.backbone((images - self.img_mean) / self.img_std)  # (B, C, 7, 7)
        if (
            feature_map.dim() != 4
            or feature_map.shape[:2] != (batch, cfg.image_channels)
            or feature_map.shape[2] * feature_map.shape[3] != cfg.image_grid_tokens
        ):
            raise InputError(
                f"backbone output must be (B, {cfg.image_channels}, h, w) with h * w = "
                f"{cfg.image_grid_tokens}, got {tuple(feature_map.shape)}"
            )
        grid_tokens = feature_map.flatten(2).transpose(1, 2)  # (B, 49, C)
        image_tokens = self.conv_learn_tokens(grid_tokens)  # (B, 445, C)

        template = self.template_tokens.to(image_tokens.dtype).expand(batch, -1, -1)  # (B, 445, 3)
        mesh = torch.cat([template, image_tokens], dim=2)  # (B, 445, 3 + C)

        vertex_tokens = image_tokens[:, cfg.num_joints:]  # (B, 431, C)
        pooling = self.part_pooling.to(image_tokens.dtype)
        part_tokens = torch.einsum("pv,bvc->bpc", pooling, vertex_tokens)  # (B, P, C), row 0 zeros
        index = contact_labels[:, :, None].expand(-1, -1, part_tokens.shape[2])
        contact_part_tokens = torch.gather(part_tokens, 1, index)  # (B, S, C)
        contact = torch.cat([contact_points.to(image_tokens.dtype), contact_part_tokens], dim=2)
        contact_mask = contact_labels != 0  # (B, S)
        num_contacts = contact.shape[1]
        if not torch.is_grad_enabled():  # inference: the trailing padding tokens change nothing
            used = _used_contact_columns(contact_mask)
            contact, contact_labels, contact_mask = contact[:, :used], contact_labels[:, :used], contact_mask[:, :used]

        for block in self.trans_encoder:
            mesh, contact = block(mesh, contact, contact_labels, contact_mask, pooling)

        with full_precision(mesh.device):  # the vertices are geometry: float32 even under autocast
            coarse = at_least_float32(mesh[:, cfg.num_joints:])  # (B, 431, 3)
            mid, full = self.vertex_upsampling(coarse, self.upsampling, self.upsampling2)
        return MeshNetworkOutput(
            vertices=full,
            vertices_mid=mid,
            vertices_coarse=coarse,
            joints14_tokens=mesh[:, : cfg.num_joints],
            contact_points=F.pad(contact, (0, 0, 0, num_contacts - contact.shape[1])),
        )

    def _check_inputs(
        self, images: torch.Tensor, contact_points: torch.Tensor, contact_labels: torch.Tensor
    ) -> int:
        """Validate the forward arguments; returns the batch size."""
        size = self.config.image_size
        if not isinstance(images, torch.Tensor) or images.dim() != 4:
            raise InputError(f"images must be a (B, 3, {size}, {size}) tensor, got {_describe(images)}")
        batch = images.shape[0]
        _check_shape("images", images, (batch, 3, size, size), floating=True)
        if not isinstance(contact_points, torch.Tensor) or contact_points.dim() != 3:
            raise InputError(f"contact_points must be a (B, S, 3) tensor, got {_describe(contact_points)}")
        num_points = contact_points.shape[1]
        if num_points < 1:
            raise InputError("contact_points must hold at least one (possibly padded) point, got S = 0")
        _check_shape("contact_points", contact_points, (batch, num_points, 3), floating=True)
        _check_shape("contact_labels", contact_labels, (batch, num_points), integer=True)
        if contact_labels.dtype != torch.int64:
            raise InputError(f"contact_labels must be int64, got {contact_labels.dtype}")
        num_classes = self.config.num_contact_classes
        if contact_labels.numel() and (
            int(contact_labels.min()) < 0 or int(contact_labels.max()) >= num_classes
        ):
            raise InputError(
                f"contact_labels must lie in 0..{num_classes - 1}, got values in "
                f"{int(contact_labels.min())}..{int(contact_labels.max())}"
            )
        return batch


class VertexUpsampling(nn.Module):
    """The two learned vertex upsamplings, 431 -> 1723 -> 6890, in float32 (or float64) geometry.

    Holds no parameters: it applies the network's ``upsampling`` and ``upsampling2`` layers, passed
    in (their state-dict keys stay the official ones). While gradients are off (inference, evaluation)
    the full mesh comes from the composed map ``W2 W1`` (6890 x 431, bias ``W2 b1 + b2``), computed
    once in float64 and cached until either layer's weights change: 4x less memory to stream per
    frame than the 6890 x 1723 matrix, which is what bounds this stage. The result equals the two
    maps applied in turn up to float32 round-off (about 1e-6 m).
    """

    def forward(
        self, coarse: torch.Tensor, first: nn.Linear, second: nn.Linear
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 431, 3) coarse vertices -> (B, 1723, 3) mid and (B, 6890, 3) full vertices (same frame)."""
        # (B, 3, 431): the maps act on the vertex axis; contiguous, else the GEMM reads it strided (8x slower)
        by_axis = coarse.transpose(1, 2).contiguous()
        mid = first(by_axis)  # (B, 3, 1723)
        if torch.is_grad_enabled():
            full = second(mid)
        else:
            tensors = (first.weight, first.bias, second.weight, second.bias)

            def compose():
                w1, b1, w2, b2 = (t.detach().to(torch.float64) for t in tensors)
                return (w2 @ w1).to(coarse.dtype), (w2 @ b1 + b2).to(coarse.dtype)

            weight, bias = derived(self, ("composed", coarse.dtype), tensors, compose)
            full = F.linear(by_axis, weight, bias)  # (B, 3, 6890)
        return mid.transpose(1, 2), full.transpose(1, 2)


def _used_contact_columns(contact_mask: torch.Tensor) -> int:
    """Return how many leading contact columns hold a valid token in some row (at least 1).

    The columns after the last valid one are padding in every row: as keys they are masked out and
    as queries nothing reads their outputs, so dropping them leaves every other output unchanged.
    """
    valid_columns = torch.nonzero(contact_mask.any(dim=0)).flatten()
    return int(valid_columns[-1]) + 1 if len(valid_columns) else 1


def _part_pooling(part_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(P, V) float32 matrix whose row p averages the vertices of part p; row 0 (no contact) is zero.

    Raises:
        InputError: a label is outside 0..P-1, or a part 1..P-1 owns no vertex (its mean is undefined).
    """
    ids = part_ids.to(torch.int64)
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
        raise InputError(
            f"part_ids_431 must lie in 0..{num_classes - 1}, got {int(ids.min())}..{int(ids.max())}"
        )
    one_hot = F.one_hot(ids, num_classes).T.to(torch.float32)  # (P, V)
    one_hot[0] = 0.0
    counts = one_hot.sum(dim=1, keepdim=True)
    empty = [p for p in range(1, num_classes) if counts[p, 0] == 0]
    if empty:
        raise InputError(f"part_ids_431: contact parts {empty} own no coarse vertex; every part 1..7 needs one")
    return one_hot / counts.clamp(min=1.0)


def _describe(x: object) -> str:
    return f"shape {tuple(x.shape)} {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__


def _check_shape(
    name: str, x: object, shape: tuple[int, ...], floating: bool = False, integer: bool = False
) -> None:
    """Raise InputError naming ``name`` unless ``x`` is a tensor of ``shape`` and the dtype kind."""
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(shape):
        raise InputError(f"{name} must be a tensor of shape {tuple(shape)}, got {_describe(x)}")
    if floating and not x.is_floating_point():
        raise InputError(f"{name} must be floating point, got {x.dtype}")
    if integer and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise InputError(f"{name} must be an integer tensor, got {x.dtype}")
