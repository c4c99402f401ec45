"""The network's geometry: layer4 cells must sit where serving draws them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.training.model import build_resnet, lse_pool, scaled_channels


def receptive_field_centre(centered_grid: bool, cell: int, output_stride: int = 32) -> tuple[float, float]:
    """Centroid of |d A[cell, cell] / d input| for a network of uniform positive weights.

    Uniform kernels make every layer symmetric about its centre, so the centroid is where the
    cell looks; random inputs (averaged over a batch) break max-pool ties without bias.
    """
    torch.manual_seed(0)
    model = build_resnet(
        "resnet34", width=0.125, centered_grid=centered_grid, output_stride=output_stride
    ).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.fill_(1.0 / module.weight[0].numel())
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.weight.fill_(1.0)
                module.bias.zero_()
    image = torch.rand(8, 3, 224, 224, requires_grad=True)
    model.features(image)[:, :, cell, cell].sum().backward()
    assert image.grad is not None
    weight = image.grad.abs().sum(dim=(0, 1))
    position = torch.arange(224.0)
    row = float((weight.sum(dim=1) * position).sum() / weight.sum())
    col = float((weight.sum(dim=0) * position).sum() / weight.sum())
    return row, col


def test_centred_grid_puts_the_middle_cell_at_the_pixel_centre_serving_assumes() -> None:
    # Serving upsamples the 7×7 CAM pixel-centre aligned: cell n covers input pixels
    # [32n, 32n + 32), centre 32n + 15.5. Only the middle cell (3) is measured: the receptive
    # field is wider than the image, and the borders truncate it symmetrically only there.
    row, col = receptive_field_centre(centered_grid=True, cell=3)
    assert abs(row - 111.5) <= 1.5
    assert abs(col - 111.5) <= 1.5


def test_the_usual_padding_would_shift_heatmaps_up_and_left() -> None:
    row, col = receptive_field_centre(centered_grid=False, cell=3)
    assert row < 32 * 3 + 15.5 - 8 and col < 32 * 3 + 15.5 - 8


def test_both_grids_give_a_7x7_map_at_224_and_resnet34_block_counts() -> None:
    for centered in (True, False):
        model = build_resnet("resnet34", width=0.25, centered_grid=centered)
        assert model.features(torch.zeros(1, 3, 224, 224)).shape == (1, 128, 7, 7)
        assert [len(stage) for stage in (model.layer1, model.layer2, model.layer3, model.layer4)] == [
            3,
            4,
            6,
            3,
        ]


def test_output_stride_16_gives_a_centred_14x14_map_with_the_same_parameters() -> None:
    dilated = build_resnet("resnet34", width=0.25, output_stride=16)
    standard = build_resnet("resnet34", width=0.25)
    assert dilated.features(torch.zeros(1, 3, 224, 224)).shape == (1, 128, 14, 14)
    dilated.load_state_dict(standard.state_dict())  # same tensors, same shapes
    # Pixel-centre upsampling of 14×14 puts cell n at 16n + 7.5: cells 6 and 7 straddle the
    # image centre symmetrically (the borders truncate their receptive fields alike).
    (row6, col6), (row7, col7) = (receptive_field_centre(True, cell, output_stride=16) for cell in (6, 7))
    assert abs((row6 + row7) / 2 - 111.5) <= 1.5 and abs((col6 + col7) / 2 - 111.5) <= 1.5
    assert row7 > row6 + 8 and col7 > col6 + 8


def test_width_multiplier_scales_channels() -> None:
    assert scaled_channels(1.0) == (64, 128, 256, 512)
    assert scaled_channels(0.25) == (16, 32, 64, 128)
    with pytest.raises(ValueError, match="positive"):
        scaled_channels(0.0)


def test_lse_pooling_matches_the_textbook_formula_and_spans_mean_to_max() -> None:
    torch.manual_seed(1)
    activations = torch.rand(2, 6, 7, 7) * 3
    for sharpness in (0.5, 4.0, 20.0):
        textbook = (
            torch.logsumexp(sharpness * activations.flatten(2), -1) - torch.log(torch.tensor(49.0))
        ) / sharpness
        assert torch.allclose(lse_pool(activations, sharpness), textbook, atol=1e-5)
    mean, peak = activations.mean(dim=(2, 3)), activations.amax(dim=(2, 3))
    assert torch.allclose(lse_pool(activations, 1e-4), mean, atol=1e-3)
    assert torch.all(lse_pool(activations, 4.0) > mean) and torch.all(lse_pool(activations, 4.0) < peak)
    # Large r approaches the maximum (within log(49)/r) without overflowing.
    assert torch.allclose(lse_pool(activations * 100, 50.0), peak * 100, atol=np.log(49) / 50 + 1e-3)


def test_lse_pooling_gradient_sums_to_one_per_channel_like_the_mean() -> None:
    # This is what keeps the exported CAM equal to Grad-CAM for either pooling.
    activations = (torch.rand(3, 4, 7, 7) * 2).requires_grad_(True)
    lse_pool(activations, 4.0).sum().backward()
    assert activations.grad is not None
    sums = activations.grad.sum(dim=(2, 3))
    assert torch.allclose(sums, torch.ones_like(sums), atol=1e-5)
    # ... and unlike the mean it favours the strongest positions.
    assert float(activations.grad.max()) > 3 / 49


def test_pooling_choice_is_validated_and_keeps_the_parameters() -> None:
    standard = build_resnet("resnet34", width=0.125)
    lse = build_resnet("resnet34", width=0.125, pooling="lse", lse_sharpness=4.0)
    lse.load_state_dict(standard.state_dict())
    assert lse(torch.zeros(1, 3, 224, 224)).shape == (1, 5)
    with pytest.raises(ValueError, match="pooling"):
        build_resnet("resnet34", width=0.125, pooling="max")
    with pytest.raises(ValueError, match="sharpness"):
        build_resnet("resnet34", width=0.125, pooling="lse", lse_sharpness=0.0)
