"""rtsr as a GStreamer element: `rtsrupscale`, a BaseTransform over `rtsr.Upscaler`.

    eval "$(rtsr gst-path)"
    gst-launch-1.0 v4l2src ! videoconvert ! queue leaky=downstream max-size-buffers=1 \\
        ! rtsrupscale model=srgan-x4-lite ! videoconvert ! autovideosink

Caps: RGB, I420 and NV12 (8-bit) in, the same format out at the model's scale; framerate, pixel
aspect and colorimetry pass through, and each output buffer carries its input's timestamps.
RGB goes to the Upscaler as it is; I420/NV12 go through rtsr's own YUV <-> RGB
(`rtsr.video.color`, the colorimetry of the caps; untagged: BT.709 from 720 lines, else BT.601),
as `rtsr upscale` converts a file. QoS is on: a buffer that would reach a synchronised sink late
is dropped before the model runs, so a slow model drops frames instead of growing latency.
One buffer is one model call (batching frames would make a live stream wait for later ones).

GStreamer's Python plugin loader runs this in its own Python (Debian 12: 3.11); the stub in
`gst/python/` adds the site-packages that `rtsr gst-path` exports, then imports this module.
"""
from __future__ import annotations

import logging

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
gi.require_version("GstVideo", "1.0")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from gi.repository import GObject, Gst, GstBase, GstVideo  # noqa: E402

from rtsr.errors import RtsrError  # noqa: E402
from rtsr.upscaler import Upscaler  # noqa: E402
from rtsr.video import color  # noqa: E402

log = logging.getLogger(__name__)
FORMATS = ("RGB", "I420", "NV12")
MAX_SIDE = 2**31 - 1
CAPS = Gst.Caps.from_string(f"video/x-raw, format=(string){{ {', '.join(FORMATS)} }}, "
                            f"width=(int)[ 1, {MAX_SIDE} ], height=(int)[ 1, {MAX_SIDE} ]")
# GstVideo colorimetry -> the FFmpeg numbers rtsr.video.color reads
_MATRIX = {GstVideo.VideoColorMatrix.BT709: color.SPACE_BT709, GstVideo.VideoColorMatrix.BT601: color.SPACE_SMPTE170M,
           GstVideo.VideoColorMatrix.BT2020: color.SPACE_BT2020_NCL}
_RANGE = {getattr(GstVideo.VideoColorRange, "0_255"): color.RANGE_FULL,  # names that start with a digit
          getattr(GstVideo.VideoColorRange, "16_235"): color.RANGE_LIMITED}
_READWRITE = GObject.ParamFlags.READWRITE


class RtsrUpscale(GstBase.BaseTransform):
    """The element; its properties are Upscaler's arguments, read when the element starts."""

    __gtype_name__ = "RtsrUpscale"

    __gstmetadata__ = ("rtsr upscale", "Filter/Effect/Video", "Super-resolution with rtsr's SRGAN models", "rtsr")
    __gsttemplates__ = (Gst.PadTemplate.new("sink", Gst.PadDirection.SINK, Gst.PadPresence.ALWAYS, CAPS),
                        Gst.PadTemplate.new("src", Gst.PadDirection.SRC, Gst.PadPresence.ALWAYS, CAPS))
    __gproperties__ = {
        "model": (str, "model", "shipped model name or .pt weights path (empty: srgan-x4)", "", _READWRITE),
        "backend": (str, "backend", "auto, torch, tensorrt, ...", "auto", _READWRITE),
        "device": (str, "device", "cpu, cuda or cuda:N (empty: the GPU if there is one)", "", _READWRITE),
        "tile": (int, "tile", "largest input tile side in pixels (0: the runtime default)", 0, 1 << 20, 0, _READWRITE),
        "precision": (str, "precision", "auto, fp32, bf16 or fp16", "auto", _READWRITE),
    }

    def __init__(self) -> None:
        super().__init__()
        self.props_ = {"model": "", "backend": "auto", "device": "", "tile": 0, "precision": "auto"}
        self.upscaler: Upscaler | None = None
        self.set_qos_enabled(True)

    def do_get_property(self, prop: GObject.ParamSpec):
        return self.props_[prop.name]

    def do_set_property(self, prop: GObject.ParamSpec, value) -> None:
        self.props_[prop.name] = value
        self.upscaler = None  # loaded again, with the new value, at the next start

    def _load(self) -> Upscaler | None:
        """The Upscaler of the current properties; a mistake is posted as one error message."""
        if self.upscaler is None:
            p = self.props_
            try:
                self.upscaler = Upscaler(p["model"] or None, backend=p["backend"], device=p["device"] or None,
                                         tile=p["tile"] or None, precision=p["precision"])
            except RtsrError as exc:
                self._error(str(exc))
        return self.upscaler

    def _error(self, text: str) -> None:
        self.message_full(Gst.MessageType.ERROR, Gst.LibraryError.quark(), Gst.LibraryError.SETTINGS,
                          f"rtsrupscale: {text}", None, __file__, "rtsrupscale", 0)

    def do_start(self) -> bool:
        return self._load() is not None

    def do_transform_caps(self, direction: Gst.PadDirection, caps: Gst.Caps, filter_: Gst.Caps | None) -> Gst.Caps:
        """Sizes times the scale downstream, divided by it upstream; everything else as it is."""
        up = self._load()
        scale = up.scale if up else 1
        out = Gst.Caps.new_empty()
        for i in range(caps.get_size()):
            s = caps.get_structure(i).copy()
            for key in ("width", "height"):
                value = s.get_value(key)
                if not isinstance(value, int):
                    s.set_value(key, Gst.IntRange(range(1, MAX_SIDE)))
                elif direction == Gst.PadDirection.SINK:
                    s.set_value(key, value * scale)
                elif value % scale == 0:
                    s.set_value(key, value // scale)
                else:
                    break
            else:
                out.append_structure(s)
        return out.intersect(filter_) if filter_ else out

    def do_transform_size(self, direction, caps, size, othercaps):
        return True, GstVideo.VideoInfo.new_from_caps(othercaps).size

    def do_set_caps(self, incaps: Gst.Caps, outcaps: Gst.Caps) -> bool:
        self.in_info = GstVideo.VideoInfo.new_from_caps(incaps)
        self.out_info = GstVideo.VideoInfo.new_from_caps(outcaps)
        self.format = self.in_info.finfo.format.value_nick.upper()
        w, h = self.in_info.width, self.in_info.height
        if self.format != "RGB" and (w % 2 or h % 2):
            self._error(f"{self.format} frames need an even width and height, not {w}x{h}")
            return False
        c = self.in_info.colorimetry
        self.spec = color.ColorSpec.from_tags(_MATRIX.get(c.matrix, color.SPACE_UNSPECIFIED),
                                              _RANGE.get(c.range, color.RANGE_UNSPECIFIED), 0, 0, h)
        return True

    def do_transform(self, inbuf: Gst.Buffer, outbuf: Gst.Buffer) -> Gst.FlowReturn:
        ok_in, src = inbuf.map(Gst.MapFlags.READ)
        ok_out, dst = outbuf.map(Gst.MapFlags.WRITE)
        try:
            if not (ok_in and ok_out):
                return Gst.FlowReturn.ERROR
            data_in = np.frombuffer(src.data, np.uint8)
            data_out = np.frombuffer(dst.data, np.uint8)
            if self.format == "RGB":
                # a copy: the mapped input is read-only, and torch wants writable arrays
                _plane(data_out, self.out_info, 0, 3)[:] = self.upscaler(np.array(_plane(data_in, self.in_info, 0, 3)))
            else:
                self._transform_yuv(data_in, data_out)
        finally:
            if ok_out:
                outbuf.unmap(dst)
            if ok_in:
                inbuf.unmap(src)
        return Gst.FlowReturn.OK

    @torch.inference_mode()
    def _transform_yuv(self, data_in: np.ndarray, data_out: np.ndarray) -> None:
        """4:2:0 planes -> RGB -> the model -> 4:2:0, through rtsr.video.color as the file pipeline does."""
        up = self.upscaler
        planes = self._planes(data_in, self.in_info)
        y, u, v = (torch.from_numpy(np.array(p))[None].to(up.device) for p in planes)
        rgb = up.upscale_tensor(color.yuv420_to_rgb(y, u, v, self.spec))
        for dest, plane in zip(self._planes(data_out, self.out_info), color.rgb_to_yuv420(rgb, self.spec)):
            dest[:] = plane[0].cpu().numpy()

    def _planes(self, data: np.ndarray, info: GstVideo.VideoInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Y, U, V views of an I420 or NV12 buffer (NV12's interleaved chroma as strided views)."""
        if self.format == "I420":
            return _plane(data, info, 0, 1), _plane(data, info, 1, 1), _plane(data, info, 2, 1)
        uv = _plane(data, info, 1, 2)
        return _plane(data, info, 0, 1), uv[..., 0], uv[..., 1]


def _plane(data: np.ndarray, info: GstVideo.VideoInfo, index: int, channels: int) -> np.ndarray:
    """Plane `index` of a mapped buffer as an H x W (x channels) view, honouring its stride."""
    h = info.height if index == 0 else (info.height + 1) // 2
    w = info.width if index == 0 or channels == 3 else (info.width + 1) // 2
    shape, strides = (h, w, channels), (info.stride[index], channels, 1)
    plane = np.lib.stride_tricks.as_strided(data[info.offset[index]:], shape, strides)
    return plane if channels > 1 else plane[..., 0]
