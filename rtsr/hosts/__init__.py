"""rtsr inside video hosts: a VapourSynth filter and a GStreamer element.

Each host module is thin glue over `rtsr.Upscaler` (models, backends, batching, tiling) and the
colour code of `rtsr.video.color`; it imports its host (vapoursynth, gi) itself, so that neither
`import rtsr` nor this package needs one:

- `rtsr.hosts.vapoursynth.upscale(clip, ...)` -> clip (Python >= 3.12, `pip install 'rtsr[vs]'`)
- `rtsr.hosts.gstreamer`: the `rtsrupscale` element, loaded by GStreamer's Python plugin loader
  from the folder `rtsr gst-path` exports as GST_PLUGIN_PATH
"""
from __future__ import annotations

from pathlib import Path

# GStreamer's Python loader scans GST_PLUGIN_PATH/python/*.py: the loader stub lives there
GST_PLUGIN_DIR = Path(__file__).resolve().parent / "gst"


def vapoursynth_script(source: str, model: str | None = None, device: str | None = None,
                       tile: int | None = None, batch: int = 1) -> str:
    """A VapourSynth script (.vpy) that upscales `source`; `vspipe -a input=OTHER` overrides it.
    `rtsr vs-script` writes one, and examples/upscale.vpy is one."""
    options = "".join(f", {name}={value!r}" for name, value in
                      (("model", model), ("device", device), ("tile", tile)) if value is not None)
    options += f", batch={batch}" if batch != 1 else ""
    return f'''\
# rtsr upscale as a VapourSynth script. Watch it:  vspipe -c y4m THIS.vpy - | mpv -
# encode it:  vspipe -c y4m THIS.vpy - | ffmpeg -i - -c:v libx264 out.mp4
# another file:  vspipe -a input=OTHER.mkv -c y4m THIS.vpy - | mpv -
import vapoursynth as vs

from rtsr.hosts.vapoursynth import upscale

source = globals().get("input", {source!r})  # vspipe -a input=... sets it
clip = vs.core.bs.VideoSource(source)  # vapoursynth-bestsource (pip install 'rtsr[vs]')
upscale(clip{options}).set_output()
'''
