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
`batch=N` upscales N buffers in one model call (worth it on a GPU, for files: a buffer then waits
for the next ones, and QoS, which drops late buffers only at batch=1, is off); the last short
batch goes out at EOS, and a seek drops what waited.

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
        "model": (str, "model", "shipped model name or .pt weights path (empty: srgan-x4-steady)", "", _READWRITE),
        "backend": (str, "backend", "auto, torch, tensorrt, ...", "auto", _READWRITE),
        "device": (str, "device", "cpu, cuda or cuda:N (empty: the GPU if there is one)", "", _READWRITE),
        "tile": (int, "tile", "largest input tile side in pixels (0: the runtime default)", 0, 1 << 20, 0, _READWRITE),
        "precision": (str, "precision", "auto, fp32, bf16 or fp16", "auto", _READWRITE),
        "batch": (int, "batch", "frames per model call; above 1 each buffer waits for the next ones (for files, "
                                "not live sources: QoS drops only at 1)", 1, 64, 1, _READWRITE),
    }

    def __init__(self) -> None:
        super().__init__()
        self.props_ = {"model": "", "backend": "auto", "device": "", "tile": 0, "precision": "auto", "batch": 1}
        self.upscaler: Upscaler | None = None
        self.pending: list[Gst.Buffer] = []  # batch > 1: inputs waiting for a full batch
        self.ready: list[Gst.Buffer] = []  # and the outputs of the last one, handed out one by one
        self.set_qos_enabled(True)

    def do_get_property(self, prop: GObject.ParamSpec):
        return self.props_[prop.name]

    def do_set_property(self, prop: GObject.ParamSpec, value) -> None:
        self.props_[prop.name] = value
        if self.get_state(0)[1] in (Gst.State.NULL, Gst.State.READY):
            self.upscaler = None  # loaded again, with the new value, at the next start; a running one is kept

    def _load(self) -> Upscaler | None:
        """The Upscaler of the current properties; a mistake is posted as one error message."""
        if self.upscaler is None:
            p = self.props_
            try:
                self.upscaler = Upscaler(p["model"] or None, backend=p["backend"], device=p["device"] or None,
                                         tile=p["tile"] or None, batch=p["batch"], precision=p["precision"])
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
        if self.pending:
            self._error("the format changed while batched frames waited (batch=1 takes streams that change)")
            return False
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
        return self._upscale_into([inbuf], [outbuf])

    # batch > 1: BaseTransform hands each input to submit_input_buffer, then asks generate_output
    # for outputs until it gets none; at 1 both are BaseTransform's own (QoS, then transform)
    def do_submit_input_buffer(self, is_discont: bool, inbuf: Gst.Buffer) -> Gst.FlowReturn:
        if self.props_["batch"] == 1:
            return GstBase.BaseTransform.do_submit_input_buffer(self, is_discont, inbuf)
        self.pending.append(inbuf)
        return Gst.FlowReturn.OK

    def do_generate_output(self):
        if self.props_["batch"] == 1:
            return GstBase.BaseTransform.do_generate_output(self)
        if len(self.pending) >= self.props_["batch"]:
            flow = self._run_pending()
            if flow != Gst.FlowReturn.OK:
                return flow, None
        return Gst.FlowReturn.OK, self.ready.pop(0) if self.ready else None

    def do_sink_event(self, event: Gst.Event) -> bool:
        if event.type == Gst.EventType.EOS and self.pending:  # the last, short batch
            if self._run_pending() == Gst.FlowReturn.OK:
                while self.ready and self.srcpad.push(self.ready.pop(0)) == Gst.FlowReturn.OK:
                    pass
        elif event.type == Gst.EventType.FLUSH_STOP:  # a seek: what waited belongs to the old position
            self.pending, self.ready = [], []
        return GstBase.BaseTransform.do_sink_event(self, event)

    def _run_pending(self) -> Gst.FlowReturn:
        """The waiting inputs in one model call, their outputs (with their timestamps) into `ready`."""
        inputs, self.pending = self.pending, []
        outputs = [Gst.Buffer.new_allocate(None, self.out_info.size, None) for _ in inputs]
        for inbuf, outbuf in zip(inputs, outputs):
            outbuf.pts, outbuf.dts, outbuf.duration = inbuf.pts, inbuf.dts, inbuf.duration
            outbuf.offset, outbuf.offset_end = inbuf.offset, inbuf.offset_end
        flow = self._upscale_into(inputs, outputs)
        self.ready += outputs
        return flow

    def _upscale_into(self, inputs: list[Gst.Buffer], outputs: list[Gst.Buffer]) -> Gst.FlowReturn:
        """Map the buffers, upscale all inputs in one model call, write each output."""
        maps = [(buf, *buf.map(flag)) for bufs, flag in ((inputs, Gst.MapFlags.READ), (outputs, Gst.MapFlags.WRITE))
                for buf in bufs]
        try:
            if not all(ok for _, ok, _ in maps):
                return Gst.FlowReturn.ERROR
            data = [np.frombuffer(m.data, np.uint8) for _, _, m in maps]
            data_in, data_out = data[:len(inputs)], data[len(inputs):]
            if self.format == "RGB":
                # np.stack copies: the mapped input is read-only, and torch wants writable arrays
                frames = self.upscaler(np.stack([_plane(d, self.in_info, 0, 3) for d in data_in]))
                for d, frame in zip(data_out, frames):
                    _plane(d, self.out_info, 0, 3)[:] = frame
            else:
                self._transform_yuv(data_in, data_out)
        except Exception as exc:  # PyGObject would log it and return OK: uninitialised frames would flow on
            self._error(f"upscaling failed: {exc}")
            return Gst.FlowReturn.ERROR
        finally:
            for buf, ok, m in maps:
                if ok:
                    buf.unmap(m)
        return Gst.FlowReturn.OK

    @torch.inference_mode()
    def _transform_yuv(self, data_in: list[np.ndarray], data_out: list[np.ndarray]) -> None:
        """4:2:0 planes -> RGB -> the model -> 4:2:0, through rtsr.video.color as the file pipeline does."""
        up = self.upscaler
        planes = [self._planes(d, self.in_info) for d in data_in]
        y, u, v = (torch.from_numpy(np.stack([p[i] for p in planes])).to(up.device) for i in range(3))
        yuv = [p.cpu().numpy() for p in color.rgb_to_yuv420(up.upscale_tensor(color.yuv_to_rgb(y, u, v, self.spec)),
                                                            self.spec)]
        for n, d in enumerate(data_out):
            for dest, plane in zip(self._planes(d, self.out_info), yuv):
                dest[:] = plane[n]

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
