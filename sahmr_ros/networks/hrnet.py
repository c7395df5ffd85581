"""HRNet, the image backbone of SA-HMR (as in METRO): HRNet-W64 classification network.

HRNet (Wang et al., TPAMI 2020) keeps a high-resolution branch through the whole network and adds
one lower-resolution branch per stage; after every "high-resolution module" all branches exchange
information by summing resampled copies of each other (the *fuse* layers).

SA-HMR uses the ImageNet classification variant (HRNet-W64-C) twice:

* ``head="stride4"``: RCNet's ``root_net`` trunk. Returns the highest-resolution branch of the last
  stage, ``(B, 64, H/4, W/4)``; no classification head modules are built.
* ``head="features"``: the image encoder of the mesh network ("METRO enhanced"). Returns the output
  of ``final_layer``, ``(B, 2048, H/32, W/32)``. The ImageNet ``classifier`` (Linear 2048->1000) is
  never used by SA-HMR and is not built.

Layout of the network (W64 channel plan; BN momentum 0.1 everywhere; convs bias-free except those of
``downsamp_modules`` and ``final_layer``)::

    stem          conv1 3x3/2 (3->64) bn1 relu, conv2 3x3/2 (64->64) bn2 relu        stride 4
    layer1        4 Bottleneck blocks, width 64 -> 256 channels
    transition1   256->64 (3x3/1) on branch 0, new branch 1: 256->128 (3x3/2)
    stage2        1 module,  branches [64, 128],           4 BasicBlocks per branch
    transition2   new branch 2: 128->256 (3x3/2)
    stage3        4 modules, branches [64, 128, 256],      4 BasicBlocks per branch
    transition3   new branch 3: 256->512 (3x3/2)
    stage4        3 modules, branches [64, 128, 256, 512], 4 BasicBlocks per branch
    incre_modules one Bottleneck per branch: 64,128,256,512 -> 128,256,512,1024
    downsamp_modules  3x3/2 conv + BN + ReLU chaining branch i into branch i+1
    final_layer   1x1 conv 1024->2048 + BN + ReLU                                    stride 32

Fuse layer (i <- j): j > i: 1x1 conv + BN then nearest upsampling by 2^(j-i); j < i: (i-j) 3x3/2
conv + BN steps, ReLU between steps but not after the last; j == i: identity. The summed maps are
passed through a ReLU.

State-dict key names and shapes equal those of the official release (zju3dv/SA-HMR,
``lib/networks/pose/sahmr/hrnet/hrnet_cls_net_featmaps.py``), so official checkpoints load 1:1:
the ``rcnet.root_net.hrnet.*`` entries into ``HRNet(HRNetConfig.w64(), "stride4")`` and the
``metro_enhanced.backbone.*`` entries (minus ``classifier.*``) into
``HRNet(HRNetConfig.w64(), "features")``. Inputs are ImageNet-normalised images; this module does
no normalisation itself.

Inference (eval mode, autograd off: ``torch.no_grad`` / ``torch.inference_mode``) folds every BN
into its conv (:mod:`sahmr_ros.networks.fusion`: cached, rebuilt when a weight or statistic
changes; the state dict is untouched) and does the residual sums and ReLUs in place. On CPU the
images are laid out channels_last (and cast to the autocast dtype) in one copy, so every conv runs
in oneDNN and the fuse layers' upsampling and sums stay channels_last; the output is then
channels_last too (except float32 W64 at batch 1, measured faster NCHW). Float32 results equal
the unfolded modules' within ~1e-6 relative. With autograd on, or in train mode, the modules run
as written (real BN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sahmr_ros.errors import InputError
from sahmr_ros.networks.fusion import can_fold, conv_bn

__all__ = ["HRNET_HEADS", "HRNetConfig", "HRNet"]

HRNET_HEADS = ("stride4", "features")
_BN_MOMENTUM = 0.1  # official value (PyTorch's default too, kept explicit)
_BOTTLENECK_EXPANSION = 4
_NUM_STAGES = 4  # stage1 (single branch, Bottleneck) + 3 multi-branch stages
_STEM_STRIDE = 4  # two stride-2 stem convs; branch 0 keeps this resolution
_LOWEST_STRIDE = _STEM_STRIDE * 2 ** (_NUM_STAGES - 1)  # 32: stride of the last branch
# CPU fp32 inference runs channels_last (oneDNN for every conv, fast nearest upsampling) except for
# one image through a trunk whose branch 0 is this wide or wider: W64 at batch 1 measured ~4%
# faster NCHW, at batch 4 ~3% slower; the small trunk ~15% faster channels_last at every batch.
_NCHW_MIN_WIDTH = 64


@dataclass(frozen=True)
class HRNetConfig:
    """Channel plan of an HRNet classification network.

    Attributes:
        stem_channels: Output channels of the two stride-2 stem convolutions (official 64).
        stage1_width: Bottleneck width of ``layer1``; it outputs ``4 * stage1_width`` channels.
        stage1_blocks: Number of Bottleneck blocks in ``layer1``.
        branch_channels: Width of each branch, highest resolution first (4 entries); stage ``k``
            (2..4) uses the first ``k``.
        blocks_per_branch: BasicBlocks per branch in every high-resolution module.
        modules_per_stage: Number of high-resolution modules in stages 2, 3 and 4.
        head_widths: Bottleneck widths of ``incre_modules`` (4 entries); the head works on
            ``4 * head_widths[i]`` channels at branch ``i``.
        final_channels: Output channels of ``final_layer`` (the ``"features"`` output).
    """

    stem_channels: int = 64
    stage1_width: int = 64
    stage1_blocks: int = 4
    branch_channels: tuple[int, ...] = (64, 128, 256, 512)
    blocks_per_branch: int = 4
    modules_per_stage: tuple[int, ...] = (1, 4, 3)
    head_widths: tuple[int, ...] = (32, 64, 128, 256)
    final_channels: int = 2048

    def __post_init__(self) -> None:
        for name, n in (("branch_channels", _NUM_STAGES), ("head_widths", _NUM_STAGES),
                        ("modules_per_stage", _NUM_STAGES - 1)):
            value = getattr(self, name)
            if len(value) != n:
                raise InputError(f"HRNetConfig.{name} must have {n} entries, got {value!r}")
        counts = (self.stem_channels, self.stage1_width, self.stage1_blocks, self.blocks_per_branch,
                  self.final_channels, *self.branch_channels, *self.modules_per_stage,
                  *self.head_widths)
        if any(int(c) != c or c < 1 for c in counts):
            raise InputError(f"HRNetConfig sizes must be positive integers, got {self!r}")

    @classmethod
    def w64(cls) -> HRNetConfig:
        """HRNet-W64-C exactly as in the official release (``cls_hrnet_w64_...yaml``)."""
        return cls()

    @classmethod
    def small(cls) -> HRNetConfig:
        """Return a light network of the same design, for CPU tests and training from scratch."""
        return cls(stem_channels=16, stage1_width=16, stage1_blocks=1,
                   branch_channels=(8, 16, 32, 64), blocks_per_branch=1,
                   modules_per_stage=(1, 1, 1), head_widths=(8, 16, 32, 64),
                   final_channels=256)


class _ConvBN(nn.Sequential):
    """Conv2d + BatchNorm2d [+ ReLU] as a Sequential (keys ``0.*`` conv, ``1.*`` BN, as officially).

    In eval mode with autograd off the BN is folded into the conv (:func:`conv_bn`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, C_out, H / stride, W / stride)``."""
        return conv_bn(self[0], self[1], x, relu=len(self) > 2)


def _conv_bn(in_ch: int, out_ch: int, kernel: int, stride: int, relu: bool,
             bias: bool = False) -> _ConvBN:
    """Conv2d (padding kernel // 2) + BatchNorm2d [+ ReLU]; keys ``0.*`` (conv) and ``1.*`` (BN)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias=bias),
        nn.BatchNorm2d(out_ch, momentum=_BN_MOMENTUM),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return _ConvBN(*layers)


class _ConvBNUp(nn.Sequential):
    """1x1 Conv2d + BatchNorm2d + nearest Upsample (keys ``0.*``, ``1.*``); BN folded at inference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, h, w)`` -> ``(B, C_out, h * s, w * s)``, ``s`` the upsampling factor."""
        return self[2](conv_bn(self[0], self[1], x))


class _BasicBlock(nn.Module):
    """Two 3x3 conv + BN, identity shortcut; channel count and resolution unchanged."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, momentum=_BN_MOMENTUM)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` -> ``(B, C, H, W)``: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + x)``."""
        out = conv_bn(self.conv1, self.bn1, x, relu=True)
        return conv_bn(self.conv2, self.bn2, out, relu=True, residual=x)


class _Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 (x4 channels) residual block, stride 1.

    The shortcut is a 1x1 conv + BN (``downsample``) when the channel count changes.
    """

    def __init__(self, in_ch: int, width: int):
        super().__init__()
        out_ch = width * _BOTTLENECK_EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width, momentum=_BN_MOMENTUM)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch, momentum=_BN_MOMENTUM)
        self.downsample = _conv_bn(in_ch, out_ch, 1, 1, relu=False) if in_ch != out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, 4 * width, H, W)``."""
        out = conv_bn(self.conv1, self.bn1, x, relu=True)
        out = conv_bn(self.conv2, self.bn2, out, relu=True)
        shortcut = x if self.downsample is None else self.downsample(x)
        return conv_bn(self.conv3, self.bn3, out, relu=True, residual=shortcut)


def _bottleneck_layer(in_ch: int, width: int, num_blocks: int) -> nn.Sequential:
    """``num_blocks`` Bottlenecks, ``in_ch`` -> ``4 * width`` channels."""
    out_ch = width * _BOTTLENECK_EXPANSION
    return nn.Sequential(*[_Bottleneck(in_ch if i == 0 else out_ch, width)
                           for i in range(num_blocks)])


def _fuse_path(channels: tuple[int, ...], src: int, dst: int) -> nn.Module:
    """Resample branch ``src`` onto branch ``dst`` (channels and resolution)."""
    if src == dst:
        return nn.Identity()
    if src > dst:  # lower resolution -> higher: 1x1 conv + BN, then nearest upsampling
        return _ConvBNUp(
            nn.Conv2d(channels[src], channels[dst], 1, bias=False),
            nn.BatchNorm2d(channels[dst], momentum=_BN_MOMENTUM),
            nn.Upsample(scale_factor=2 ** (src - dst), mode="nearest"),
        )
    # higher resolution -> lower: (dst - src) stride-2 3x3 convs; the last changes the channel
    # count and has no ReLU (the ReLU comes after the sum).
    steps = dst - src
    return nn.Sequential(*[
        _conv_bn(channels[src], channels[dst] if k == steps - 1 else channels[src], 3, 2,
                 relu=k != steps - 1)
        for k in range(steps)
    ])


class _HighResolutionModule(nn.Module):
    """Parallel BasicBlock branches followed by all-to-all fusion (sum, then ReLU)."""

    def __init__(self, channels: tuple[int, ...], blocks_per_branch: int):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*[_BasicBlock(c) for _ in range(blocks_per_branch)]) for c in channels
        )
        n = len(channels)
        self.fuse_layers = nn.ModuleList(
            nn.ModuleList(_fuse_path(channels, src, dst) for src in range(n)) for dst in range(n)
        )

    def forward(self, xs: list[torch.Tensor], num_outputs: int | None = None) -> list[torch.Tensor]:
        """Run the branches and fuse them.

        Args:
            xs: One tensor per branch, ``(B, C_i, H / 2^i, W / 2^i)`` relative to branch 0.
            num_outputs: Only the first ``num_outputs`` fused branches are computed (all if None).

        Returns:
            The fused branches, same shapes as ``xs`` (the first ``num_outputs``).
        """
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        # at inference the sums and the ReLU reuse the first sum's fresh tensor
        in_place = not self.training and not torch.is_grad_enabled()
        fused = []
        for paths in self.fuse_layers[:num_outputs]:
            y = paths[0](xs[0]) + paths[1](xs[1])  # summed in branch order, as officially
            for path, x in zip(paths[2:], xs[2:]):
                y = y.add_(path(x)) if in_place else y + path(x)
            fused.append(y.relu_() if in_place else F.relu(y))
        return fused


def _transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.ModuleList:
    """Adapt the previous stage's branches to the next one, adding one lower-resolution branch."""
    assert len(cur) == len(prev) + 1, "HRNet adds exactly one branch per stage"
    layers: list[nn.Module] = [
        nn.Identity() if p == c else _conv_bn(p, c, 3, 1, relu=True) for p, c in zip(prev, cur)
    ]
    # The new branch comes from the previous lowest-resolution branch (nested as in the official
    # code, hence keys ``transitionK.<i>.0.0.weight``).
    layers.append(nn.Sequential(_conv_bn(prev[-1], cur[-1], 3, 2, relu=True)))
    return nn.ModuleList(layers)


class HRNet(nn.Module):
    """HRNet classification network, trunk only or up to ``final_layer``.

    Args:
        config: Channel plan, e.g. ``HRNetConfig.w64()`` (official) or ``HRNetConfig.small()``.
        head: ``"stride4"`` returns the highest-resolution branch of the last stage;
            ``"features"`` returns the classification features after ``final_layer``.

    Attributes:
        config: The channel plan.
        head: The head name.
        out_channels: Channels of the output (64 / 2048 for W64).
        out_stride: Input pixels per output pixel (4 / 32).
    """

    def __init__(self, config: HRNetConfig, head: str):
        super().__init__()
        if head not in HRNET_HEADS:
            raise InputError(f"HRNet head must be one of {HRNET_HEADS}, got {head!r}")
        self.config = config
        self.head = head
        c = config

        self.conv1 = nn.Conv2d(3, c.stem_channels, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c.stem_channels, momentum=_BN_MOMENTUM)
        self.conv2 = nn.Conv2d(c.stem_channels, c.stem_channels, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c.stem_channels, momentum=_BN_MOMENTUM)
        self.layer1 = _bottleneck_layer(c.stem_channels, c.stage1_width, c.stage1_blocks)

        prev: tuple[int, ...] = (c.stage1_width * _BOTTLENECK_EXPANSION,)
        for k, num_modules in zip(range(2, _NUM_STAGES + 1), c.modules_per_stage):
            cur = tuple(c.branch_channels[:k])
            self.add_module(f"transition{k - 1}", _transition(prev, cur))
            self.add_module(f"stage{k}", nn.Sequential(*[
                _HighResolutionModule(cur, c.blocks_per_branch) for _ in range(num_modules)
            ]))
            prev = cur

        if head == "features":
            head_channels = [w * _BOTTLENECK_EXPANSION for w in c.head_widths]
            self.incre_modules = nn.ModuleList(
                _bottleneck_layer(ch, w, 1) for ch, w in zip(prev, c.head_widths)
            )
            self.downsamp_modules = nn.ModuleList(
                _conv_bn(head_channels[i], head_channels[i + 1], 3, 2, relu=True, bias=True)
                for i in range(len(head_channels) - 1)
            )
            self.final_layer = _conv_bn(head_channels[-1], c.final_channels, 1, 1, relu=True,
                                        bias=True)
            self.out_channels = c.final_channels
            self.out_stride = _LOWEST_STRIDE
        else:
            self.out_channels = c.branch_channels[0]
            self.out_stride = _STEM_STRIDE

        self._init_weights()

    def _init_weights(self) -> None:
        """Official initialisation: Kaiming-normal (fan_out) convs, BN weight 1 / bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Run the network.

        Args:
            images: ``(B, 3, H, W)`` float, ImageNet-normalised; H and W multiples of 32.

        Returns:
            ``"stride4"``: ``(B, C0, H/4, W/4)`` (C0 = 64 for W64);
            ``"features"``: ``(B, final_channels, H/32, W/32)`` (2048 for W64).
        """
        _check_images(images)
        if can_fold(self.bn1):
            images = self._inference_input(images)
        x = conv_bn(self.conv1, self.bn1, images, relu=True)
        x = conv_bn(self.conv2, self.bn2, x, relu=True)
        xs = [self.layer1(x)]

        for k in range(2, _NUM_STAGES + 1):
            transition = getattr(self, f"transition{k - 1}")
            stage = getattr(self, f"stage{k}")
            # existing branches are adapted in place, the new one grows from the lowest resolution
            xs = [t(x) for t, x in zip(transition, xs)] + [transition[-1](xs[-1])]
            for i, module in enumerate(stage):
                last = k == _NUM_STAGES and i == len(stage) - 1
                # the stride-4 head needs only branch 0 of the very last fusion
                xs = module(xs, num_outputs=1 if last and self.head == "stride4" else None)

        if self.head == "stride4":
            return xs[0]
        y = self.incre_modules[0](xs[0])
        in_place = can_fold(self.bn1)
        for incre, down, x in zip(self.incre_modules[1:], self.downsamp_modules, xs[1:]):
            y = incre(x).add_(down(y)) if in_place else incre(x) + down(y)
        return self.final_layer(y)

    def _inference_input(self, images: torch.Tensor) -> torch.Tensor:
        """Lay ``images`` ``(B, 3, H, W)`` out for folded CPU inference in one copy (or none).

        Under CPU autocast the float32 images are cast to the autocast dtype here, together with
        the channels_last reordering that oneDNN would otherwise do as a second copy. In float32
        the network runs channels_last unless a W64-wide trunk gets one image (see
        ``_NCHW_MIN_WIDTH``). Other devices get the images unchanged.
        """
        if images.device.type != "cpu":
            return images
        dtype = images.dtype
        if dtype == torch.float32 and torch.is_autocast_enabled("cpu"):
            dtype = torch.get_autocast_dtype("cpu")
        if dtype == torch.float32 and images.shape[0] == 1 \
                and self.config.branch_channels[0] >= _NCHW_MIN_WIDTH:
            return images
        return images.to(dtype=dtype, memory_format=torch.channels_last)


def _check_images(images: torch.Tensor) -> None:
    """Raise InputError unless ``images`` is a float ``(B, 3, H, W)`` with H, W multiples of 32."""
    if not isinstance(images, torch.Tensor):
        raise InputError(f"HRNet images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"HRNet images must have shape (B, 3, H, W), got {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"HRNet images must be floating point, got {images.dtype}")
    h, w = images.shape[-2:]
    if h % _LOWEST_STRIDE or w % _LOWEST_STRIDE:
        raise InputError(
            f"HRNet images height and width must be multiples of {_LOWEST_STRIDE}, got {h}x{w}"
        )
