"""ResNet-18/34 in plain torch (torchvision is not a dependency), with a channel-width multiplier.

The layout follows He et al. 2016 as used by Qi et al.: a 7×7 stride-2 stem, max-pool, four
residual stages of BasicBlocks, global average pooling and one linear classifier. The last
stage ("layer4") is the Grad-CAM target; with a GAP + linear head its Grad-CAM has a closed
form that the export computes inside the ONNX graph (see ``CamHead``).
"""

from __future__ import annotations

import torch
from torch import nn

from app.modelcard import CAM_TARGETS, DEFAULT_CAM_TARGET

# Blocks per residual stage.
STAGE_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "resnet18": (2, 2, 2, 2),
    "resnet34": (3, 4, 6, 3),
}
BASE_CHANNELS = (64, 128, 256, 512)
# Total stride of layer4: 32 (standard) or 16 (layer4 dilated instead of strided).
OUTPUT_STRIDES = (32, 16)
# Global pooling before the classifier: "avg" (the paper's ResNet) or "lse" (log-sum-exp).
POOLINGS = ("avg", "lse")
DEFAULT_LSE_SHARPNESS = 4.0


def lse_pool(activations: torch.Tensor, sharpness: float) -> torch.Tensor:
    """Log-sum-exp pooling over the map, [N, K, h, w] → [N, K] (Pinheiro & Collobert 2015).

    (1/r)·log(mean_ij exp(r·A_ij)) runs from the mean (r → 0) to the maximum (r → ∞). Its gradient
    is a softmax over positions and sums to 1 per channel, exactly as the mean's does, so Grad-CAM
    on the pooled map keeps the closed form ReLU(sum_k w_ck A_k)/(h·w) that the export computes.
    """
    scaled = sharpness * activations.flatten(2)
    # The maximum is subtracted so that exp cannot overflow in float32; the mean (not the sum)
    # folds in the log(h·w) term, so no shape-derived constant enters the traced graph.
    peak = scaled.amax(dim=-1, keepdim=True).detach()
    pooled = peak.squeeze(-1) + torch.log(torch.exp(scaled - peak).mean(dim=-1))
    return pooled / sharpness


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
        pooling: str = "avg",
        lse_sharpness: float = DEFAULT_LSE_SHARPNESS,
    ) -> None:
        super().__init__()
        if arch not in STAGE_BLOCKS:
            raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(STAGE_BLOCKS)}")
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride}")
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        if not lse_sharpness > 0:
            raise ValueError(f"the log-sum-exp sharpness must be positive, got {lse_sharpness}")
        self.arch = arch
        self.pooling = pooling
        self.lse_sharpness = float(lse_sharpness)
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

    def pool(self, activations: torch.Tensor) -> torch.Tensor:
        if self.pooling == "lse":
            return lse_pool(activations, self.lse_sharpness)
        return activations.mean(dim=(2, 3))

    def classify(self, activations: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(activations))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.features(x))


# The normal contrast cancels evidence that every class shares (e.g. "this is a spine view",
# which supports normal as much as Rachischisis), so an anomaly's map shows what makes the
# image abnormal. The vocabulary lives with the card (app.modelcard.CAM_TARGETS).


def cam_score_weights(fc: nn.Linear, target: str, normal_index: int | None) -> torch.Tensor:
    """[C, K] weights v_c with Grad-CAM_c = ReLU(sum_k v_ck A_k) / (h·w) for the chosen target."""
    fc_weight = fc.weight
    if target == "logit":
        return fc_weight
    if target != "normal-contrast":
        raise ValueError(f"cam target must be one of {CAM_TARGETS}, got {target!r}")
    classes = fc.out_features  # a plain int: shapes are tensors while the exporter traces
    if normal_index is None or normal_index not in range(classes) or classes < 2:
        raise ValueError("a normal-contrast CAM needs the index of the normal class")
    reference = fc_weight[normal_index].expand_as(fc_weight)
    anomalies = [c for c in range(classes) if c != normal_index]
    weights = fc_weight - reference
    normal_row = fc_weight[normal_index] - fc_weight[anomalies].mean(dim=0)
    return torch.cat([weights[:normal_index], normal_row[None], weights[normal_index + 1 :]])


class CamHead(nn.Module):
    """Wraps a ResNet to output (logits, cam, features) in one pass: the exported graph.

    ``features`` is the pooled layer4 vector [N, K] that the classifier reads (average or
    log-sum-exp pooling, whichever the model uses): the space of the Mahalanobis OOD signal.

    For a score s = sum_c u_c y_c of logits y_c = sum_k w_ck * pool_k(A) + b_c, the Grad-CAM
    channel weight mean_ij ds/dA_k(i,j) equals (sum_c u_c w_ck) / (h*w) whenever the pooling's
    gradient sums to 1 over positions (average and log-sum-exp pooling both do), so
    Grad-CAM = ReLU(sum_k v_k A_k) / (h*w) with v = u·W — no backward pass needed at serving time.
    """

    def __init__(
        self, model: ResNet, target: str = DEFAULT_CAM_TARGET, normal_index: int | None = None
    ) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.normal_index = normal_index
        cam_score_weights(model.fc, target, normal_index)  # validate now, not at export

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        activations = self.model.features(image)
        pooled = self.model.pool(activations)
        logits = self.model.fc(pooled)
        h, w = activations.shape[2], activations.shape[3]
        # A 1×1 convolution with the score weights is sum_k v_ck A_k; it maps onto a plain
        # Conv node, which every ONNX Runtime provider supports.
        weight = cam_score_weights(self.model.fc, self.target, self.normal_index)[:, :, None, None]
        cam = torch.relu(nn.functional.conv2d(activations, weight)) / (h * w)
        return logits, cam, pooled


def build_resnet(
    arch: str = "resnet34",
    width: float = 0.25,
    num_classes: int = 5,
    centered_grid: bool = True,
    output_stride: int = 32,
    pooling: str = "avg",
    lse_sharpness: float = DEFAULT_LSE_SHARPNESS,
) -> ResNet:
    return ResNet(
        arch=arch,
        width=width,
        num_classes=num_classes,
        centered_grid=centered_grid,
        output_stride=output_stride,
        pooling=pooling,
        lse_sharpness=lse_sharpness,
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
        "pooling": model.pooling,
        "lse_sharpness": model.lse_sharpness,
    }
