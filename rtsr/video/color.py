"""YUV 4:2:0 (and 4:4:4 in) <-> RGB on the device, from the stream's colour tags.

Done on the device because it is almost free there, while a 4K rgb24 round trip through
libswscale costs tens of milliseconds of CPU per frame. Chroma is treated as MPEG-2/H.264
"left" sited (co-sited horizontally with even luma columns, centred vertically), which is what
libx264 writes and players assume for 4:2:0.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# AVColorSpace / AVColorRange values as FFmpeg (and PyAV) number them
SPACE_BT709, SPACE_UNSPECIFIED, SPACE_BT470BG, SPACE_SMPTE170M, SPACE_BT2020_NCL = 1, 2, 5, 6, 9
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2
# the 4:2:0 pixel format the path carries for each bit depth (deeper sources go as 10-bit), and
# the 4:4:4 one a source with finer chroma (4:2:2, 4:4:4, RGB) is read in, so none of it is lost
YUV420_FORMATS = {8: "yuv420p", 10: "yuv420p10le"}
YUV444_FORMATS = {8: "yuv444p", 10: "yuv444p10le"}
# luma coefficients (Kr, Kb) of each matrix
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722), "bt2020": (0.2627, 0.0593)}
_MATRIX_OF_SPACE = {SPACE_BT709: "bt709", SPACE_BT470BG: "bt601", SPACE_SMPTE170M: "bt601",
                    SPACE_BT2020_NCL: "bt2020"}


@dataclass(frozen=True)
class ColorSpec:
    """What the stream's tags say, with defaults filled in the way players fill them."""

    matrix: str            # "bt601", "bt709" or "bt2020"
    full_range: bool
    colorspace: int        # tags to write back on the output
    color_range: int
    color_primaries: int
    color_trc: int
    bit_depth: int = 8     # 8 or 10: code values of the YUV planes (a 10-bit source stays 10-bit)
    full_chroma: bool = False  # the reader delivers 4:4:4 (input_pix_fmt); the output is 4:2:0 either way

    @classmethod
    def from_tags(cls, colorspace: int, color_range: int, primaries: int, trc: int, height: int,
                  bit_depth: int = 8, full_chroma: bool = False) -> "ColorSpec":
        # untagged: HD and up is BT.709, SD is BT.601 (what players assume)
        matrix = _MATRIX_OF_SPACE.get(colorspace, "bt709" if height >= 720 else "bt601")
        return cls(matrix, color_range == RANGE_FULL, colorspace, color_range, primaries, trc, bit_depth, full_chroma)

    @property
    def pix_fmt(self) -> str:
        """The 4:2:0 format of the upscaled frames (the writer's input)."""
        return YUV420_FORMATS[self.bit_depth]

    @property
    def input_pix_fmt(self) -> str:
        """The format the reader delivers: 4:4:4 where the source's chroma is finer than 4:2:0."""
        return (YUV444_FORMATS if self.full_chroma else YUV420_FORMATS)[self.bit_depth]

    def levels(self) -> tuple[float, float, float, float]:
        """(luma offset, luma span, chroma offset, chroma span) in code values of this bit depth."""
        m = 1 << (self.bit_depth - 8)
        if self.full_range:
            top = float((1 << self.bit_depth) - 1)
            return 0.0, top, 128.0 * m, top
        return 16.0 * m, 219.0 * m, 128.0 * m, 224.0 * m


def luma_coefficients(matrix: str) -> tuple[float, float, float]:
    kr, kb = _KR_KB[matrix]
    return kr, 1.0 - kr - kb, kb


def yuv_to_rgb(y: torch.Tensor, u: torch.Tensor, v: torch.Tensor, spec: ColorSpec) -> torch.Tensor:
    """Integer planes N x H x W and chroma N x H/2 x W/2 (4:2:0) or N x H x W (4:4:4) (x2) of
    spec.bit_depth -> float RGB N x 3 x H x W in [0, 1]."""
    dtype = torch.float16 if y.is_cuda else torch.float32  # fp16 holds 10-bit code values exactly
    yf, uf, vf = (p.to(dtype) for p in (y, u, v))
    y_off, y_span, c_off, c_span = spec.levels()
    yf, uf, vf = (yf - y_off) / y_span, (uf - c_off) / c_span, (vf - c_off) / c_span
    uv = torch.stack((uf, vf), 1)
    if uv.shape[-2:] != yf.shape[-2:]:
        uv = _upsample_chroma(uv)
    kr, kg, kb = luma_coefficients(spec.matrix)
    cb, cr = uv[:, 0], uv[:, 1]
    r = yf + 2 * (1 - kr) * cr
    b = yf + 2 * (1 - kb) * cb
    g = (yf - kr * r - kb * b) / kg
    return torch.stack((r, g, b), 1).clamp_(0, 1)


def rgb_to_yuv420(rgb: torch.Tensor, spec: ColorSpec) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float RGB N x 3 x H x W in [0, 1] -> planes Y (N x H x W), U, V (N x H/2 x W/2) of spec.bit_depth:
    uint8 for 8-bit, int16 for 10-bit (torch's widest small integer with full op support)."""
    if spec.bit_depth > 8:
        rgb = rgb.float()  # fp16 steps are 0.5 of a code value above 512: too coarse for 10-bit
    kr, kg, kb = luma_coefficients(spec.matrix)
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    yf = kr * r + kg * g + kb * b
    uv = torch.stack(((b - yf) / (2 * (1 - kb)), (r - yf) / (2 * (1 - kr))), 1)
    uv = _downsample_chroma(uv)
    y_off, y_span, c_off, c_span = spec.levels()
    top, out = (1 << spec.bit_depth) - 1, torch.uint8 if spec.bit_depth == 8 else torch.int16
    to_int = lambda t: t.round_().clamp_(0, top).to(out)  # noqa: E731
    uvq = to_int(uv * c_span + c_off)
    return to_int(yf * y_span + y_off), uvq[:, 0], uvq[:, 1]


def _upsample_chroma(c: torch.Tensor) -> torch.Tensor:
    """N x 2 x h x w -> N x 2 x 2h x 2w for left-sited 4:2:0 chroma (linear interpolation)."""
    # horizontal: even output columns sit on a chroma sample, odd ones halfway to the next
    right = torch.cat((c[..., 1:], c[..., -1:]), -1)
    c = torch.stack((c, (c + right) / 2), -1).flatten(-2)
    # vertical: chroma rows sit between luma rows 2j and 2j+1 -> weights 3/4 and 1/4
    up = torch.cat((c[..., :1, :], c[..., :-1, :]), -2)
    down = torch.cat((c[..., 1:, :], c[..., -1:, :]), -2)
    return torch.stack((0.75 * c + 0.25 * up, 0.75 * c + 0.25 * down), -2).flatten(-3, -2)


def _downsample_chroma(c: torch.Tensor) -> torch.Tensor:
    """N x 2 x H x W -> N x 2 x H/2 x W/2: [1 2 1]/4 around even columns, mean of row pairs."""
    c = (c[..., 0::2, :] + c[..., 1::2, :]) / 2
    left = torch.cat((c[..., :1], c[..., 1:-1:2]), -1)
    return (left + 2 * c[..., 0::2] + c[..., 1::2]) / 4
