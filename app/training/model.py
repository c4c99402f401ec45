"""ResNet-18/34 in plain torch (torchvision is not a dependency), with a channel-width multiplier.

The layout follows He et al. 2016 as used by Qi et al.: a 7×7 stride-2 stem, max-pool, four
residual stages of BasicBlocks, global average pooling and one linear classifier. The last
stage ("layer4") is the Grad-CAM target; with a GAP + linear head its Grad-CAM has a closed
form that the export computes inside the ONNX graph (see ``CamHead``).
"""

from __future__ import annotations

import torch
from torch import nn

# Blocks per residual stage.
STAGE_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}
BASE_CHANNELS = (64, 128, 256, 512)
# Total stride of layer4: 32 (standard) or 16 (layer4 dilated instead of strided).
OUTPUT_STRIDES = (32, 16)


def scaled_channels(width: float) -> tuple[int, int, int, int]:
    if width <= 0:
        raise ValueError(f"width multiplier must be positive, got {width}")
    c1, c2, c3, c4 = (max(4, round(c * width)) for c in BASE_CHANNELS)
    return (c1, c2, c3, c4)


class BasicBlock(nn.Module):
    """A residual block. ``shift`` (stride-2 blocks only) pads after rather than around, so output
    cell i is centred on input 2i+1 instead of 2i (see ``ResNet``)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, shift: bool = False, dilation: int = 1
    ) -> None:
        super().__init__()
        self.shift = shift and stride == 2
        if self.shift and dilation != 1:
            raise ValueError("a shifted (stride-2) block cannot be dilated")
        padding = 0 if self.shift else dilation
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.shift:
            out = self.relu(self.bn1(self.conv1(nn.functional.pad(x, (0, 2, 0, 2)))))
            identity = self.downsample(x[:, :, 1:, 1:])  # 1×1 stride 2 sampling inputs 2i+1
        else:
            out = self.relu(self.bn1(self.conv1(x)))
            identity = self.downsample(x)
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with an optional centred feature grid.

    With the usual symmetric padding, every stride-2 layer centres output cell i on input 2i, so
    layer4 cell n looks at input pixel 32n: half a cell (15.5 px at 224) up and left of where a
    pixel-centre-aligned upsampling of the 7×7 map (what serving does) puts it. Heatmaps then sit
    visibly beside the lesion. ``centered_grid`` pads the stem, the max-pool and the first block of
    layer2 and layer3 after instead of around, which moves cell n to 32n + 15 (shifts 1+2+4+8 px).
    """

    def __init__(
        self,
        arch: str = "resnet34",
        width: float = 1.0,
        num_classes: int = 5,
        centered_grid: bool = True,
        output_stride: int = 32,
    ) -> None:
        super().__init__()
        if arch not in STAGE_BLOCKS:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(STAGE_BLOCKS)}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        self.arch = arch
        self.width = width
        self.centered_grid = centered_grid
        self.output_stride = output_stride
        channels = scaled_channels(width)
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], 7, 2, 0 if centered_grid else 3, bias=False),
            nn.BatchNorm2d(channels[0]),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 0 if centered_grid else 1),
        )
        # Zero padding before the max-pool equals the usual -inf padding: its input is post-ReLU.
        self.stem_pad: nn.Module = nn.ZeroPad2d((2, 4, 2, 4)) if centered_grid else nn.Identity()
        self.pool_pad: nn.Module = nn.ZeroPad2d((0, 2, 0, 2)) if centered_grid else nn.Identity()
        stages: list[nn.Sequential] = []
        in_channels = channels[0]
        for index, (blocks, out_channels) in enumerate(zip(STAGE_BLOCKS[arch], channels, strict=True)):
            dilated = index == 3 and output_stride == 16  # layer4 at stride 1, dilation 2
            stride = 1 if index == 0 or dilated else 2
            dilation = 2 if dilated else 1
            # Shift layer2 and layer3 (layer4 keeps 32n + 15); at output stride 16 only layer2, so
            # layer3 and the undecimated layer4 sit at 16n + 7 (shifts 1+2+4 px).
            shift = centered_grid and index in ((1, 2) if output_stride == 32 else (1,))
            layers = [BasicBlock(in_channels, out_channels, stride, shift, dilation)]
            layers += [
                BasicBlock(out_channels, out_channels, 1, dilation=dilation) for _ in range(blocks - 1)
            ]
            stages.append(nn.Sequential(*layers))
            in_channels = out_channels
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(channels[3], num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Zero-init the last BN of each block so every residual branch starts as identity:
        # trains faster and more stably from scratch (Goyal et al. 2017).
        for module in self.modules():
            if isinstance(module, BasicBlock):
                nn.init.zeros_(module.bn2.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The layer4 activation map A, [N, K, h, w]."""
        conv, bn, relu, pool = self.stem
        x = pool(self.pool_pad(relu(bn(conv(self.stem_pad(x))))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def classify(self, activations: torch.Tensor) -> torch.Tensor:
        return self.fc(activations.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


class CamHead(nn.Module):
    """Wraps a ResNet to output (logits, cam) in one pass: the exported graph.

    For logits y_c = sum_k w_ck * mean_ij A_k(i,j) + b_c, the Grad-CAM channel weight
    mean_ij dy_c/dA_k(i,j) equals w_ck / (h*w), so
    Grad-CAM_c = ReLU(sum_k w_ck A_k) / (h*w) — no backward pass needed at serving time.
    """

    def __init__(self, model: ResNet) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        activations = self.model.features(image)
        logits = self.model.classify(activations)
        h, w = activations.shape[2], activations.shape[3]
        # A 1×1 convolution with the classifier weights is sum_k w_ck A_k; it maps onto a plain
        # Conv node, which every ONNX Runtime provider supports.
        weight = self.model.fc.weight[:, :, None, None]  # [C, K, 1, 1]
        cam = torch.relu(nn.functional.conv2d(activations, weight)) / (h * w)
        return logits, cam


def build_resnet(
    arch: str = "resnet34",
    width: float = 0.25,
    num_classes: int = 5,
    centered_grid: bool = True,
    output_stride: int = 32,
) -> ResNet:
    return ResNet(
        arch=arch,
        width=width,
        num_classes=num_classes,
        centered_grid=centered_grid,
        output_stride=output_stride,
    )


def cell_centre(model: ResNet) -> tuple[int, int]:
    """(stride, offset): layer4 cell n is centred on model-input pixel stride*n + offset."""
    stride = model.output_stride
    if not model.centered_grid:
        return stride, 0
    return stride, stride // 2 - 1  # 32n + 15 or 16n + 7


def model_config(model: ResNet) -> dict[str, object]:
    """What a checkpoint needs to rebuild the module."""
    return {
        "arch": model.arch,
        "width": model.width,
        "num_classes": model.fc.out_features,
        "centered_grid": model.centered_grid,
        "output_stride": model.output_stride,
    }
