import pytest
import torch

from rtsr.models import Discriminator, Generator, fold_batchnorm, load_generator_config
from rtsr.errors import RtsrError
from rtsr.models.config import GeneratorConfig
from rtsr.tiling import receptive_radius
from tests.conftest import make_generator


@pytest.mark.parametrize("scale", [2, 4])
def test_generator_output_shape(scale: int) -> None:
    g = make_generator(scale=scale)
    assert g(torch.rand(2, 3, 10, 14)).shape == (2, 3, 10 * scale, 14 * scale)


def test_paper_config_layers() -> None:
    g = Generator(load_generator_config("srgan-x4"))
    assert len(g.body) == 16
    assert g.head[0].kernel_size == (9, 9) and g.tail.kernel_size == (9, 9)
    assert len(g.upsample) == 2
    assert all(isinstance(s[1], torch.nn.PixelShuffle) for s in g.upsample)
    assert g.upsample[0][0].out_channels == 256
    lite = load_generator_config("srgan-x4-lite")
    assert lite.scale == 4 and lite.num_blocks < 16


def test_bad_scale_is_a_user_error() -> None:
    with pytest.raises(RtsrError):
        GeneratorConfig(name="x3", scale=3)


def test_unknown_config_name() -> None:
    with pytest.raises(RtsrError, match="no model config"):
        load_generator_config("nope")


def test_discriminator_shape_and_blocks() -> None:
    d = Discriminator()
    convs = [m for m in d.features if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert [c.stride[0] for c in convs] == [1, 2, 1, 2, 1, 2, 1, 2]
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in d.features) == 7
    assert d(torch.rand(3, 3, 96, 96)).shape == (3, 1)


def test_fold_batchnorm_matches_unfolded() -> None:
    g = make_generator(blocks=3, channels=16)
    folded = fold_batchnorm(g)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    x = torch.rand(2, 3, 20, 24)
    with torch.no_grad():
        assert (g(x) - folded(x)).abs().max().item() < 1e-4


def test_receptive_radius_is_tight() -> None:
    """A pixel `radius` away changes the output at the centre; one further away does not."""
    g = fold_batchnorm(make_generator(blocks=2, channels=8))
    r = receptive_radius(g.config)
    size = 2 * r + 9
    c = size // 2
    x = torch.rand(1, 3, size, size)
    with torch.no_grad():
        base = g(x)[..., c * 4:(c + 1) * 4, c * 4:(c + 1) * 4]
        far, near = x.clone(), x.clone()
        far[..., c, c + r + 1] += 1
        near[..., c, c + r] += 1
        assert torch.equal(g(far)[..., c * 4:(c + 1) * 4, c * 4:(c + 1) * 4], base)
        assert not torch.equal(g(near)[..., c * 4:(c + 1) * 4, c * 4:(c + 1) * 4], base)


def test_bicubic_skip_adds_the_bicubic_upscale_of_the_input() -> None:
    """skip='bicubic': the network's output is added to F.interpolate bicubic; with the tail
    zeroed the generator is exactly bicubic, and an unknown skip is a user error."""
    config = GeneratorConfig(name="skip", num_blocks=2, channels=8, skip="bicubic")
    g = Generator(config).eval()
    with torch.no_grad():
        g.tail.weight.zero_()
        g.tail.bias.zero_()
        x = torch.rand(1, 3, 12, 10)
        expected = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
        assert torch.equal(g(x), expected)
        assert torch.allclose(fold_batchnorm(g)(x), expected, atol=1e-6)
    assert GeneratorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(RtsrError, match="skip must be"):
        GeneratorConfig(name="bad", skip="nearest")


def test_residual_part_plus_the_bicubic_skip_is_the_generator() -> None:
    """What a bf16 backend runs (the OpenVINO one): the model without its skip, which it adds in fp32."""
    from dataclasses import replace

    from rtsr.models.srgan import residual_part

    torch.manual_seed(0)
    generator = Generator(replace(GeneratorConfig(name="s", num_blocks=2, channels=8), skip="bicubic")).eval()
    x = torch.rand(2, 3, 12, 16)
    bicubic = torch.nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)
    residual = residual_part(generator)
    assert residual.config.skip == "none"
    assert torch.allclose(residual(x) + bicubic, generator(x), atol=1e-6)
    assert not torch.allclose(residual(x), generator(x), atol=1e-3)
