"""GStreamer's Python loader finds this file through GST_PLUGIN_PATH (`rtsr gst-path`).

It runs in the loader's own Python: the site-packages in RTSR_GST_SITE (where rtsr and torch are
installed for that Python version) go first on its path, then the element is imported from
rtsr.hosts.gstreamer.
"""
import logging
import os
import site
import sys

_before = list(sys.path)
for _dir in filter(None, os.environ.get("RTSR_GST_SITE", "").split(os.pathsep)):
    site.addsitedir(_dir)  # .pth files too: an editable rtsr is found through one
sys.path[:] = [p for p in sys.path if p not in _before] + _before
import gi  # noqa: E402

gi.require_version("Gst", "1.0")
gi.require_version("GstBase", "1.0")
from gi.repository import GObject, Gst, GstBase  # noqa: E402

try:
    from rtsr.hosts.gstreamer import RtsrUpscale
except ImportError as exc:
    # a stand-in that fails with one line where it is used: GStreamer caches which elements a scan
    # found, so registering none here would hide the real one after the environment is fixed
    _WHY = (f"rtsrupscale: {exc} in GStreamer's Python {sys.version_info.major}.{sys.version_info.minor}; "
            'run eval "$(rtsr gst-path)" with an rtsr installed for this Python')
    logging.getLogger("rtsr").error("%s", _WHY)

    class RtsrUpscale(GstBase.BaseTransform):  # type: ignore[no-redef]
        __gtype_name__ = "RtsrUpscale"
        __gstmetadata__ = ("rtsr upscale (not loaded)", "Filter/Effect/Video", _WHY, "rtsr")
        __gsttemplates__ = tuple(Gst.PadTemplate.new(name, direction, Gst.PadPresence.ALWAYS, Gst.Caps.new_any())
                                 for name, direction in (("sink", Gst.PadDirection.SINK), ("src", Gst.PadDirection.SRC)))

        # the element's property names, so that a pipeline naming them reaches do_start's error
        __gproperties__ = {name: (str, name, "", "", GObject.ParamFlags.READWRITE)
                           for name in ("model", "backend", "device", "tile", "precision")}

        def do_set_property(self, prop, value) -> None:
            pass

        def do_start(self) -> bool:
            self.message_full(Gst.MessageType.ERROR, Gst.LibraryError.quark(), Gst.LibraryError.INIT, _WHY, None,
                              __file__, "rtsrupscale", 0)
            return False

GObject.type_register(RtsrUpscale)
__gstelementfactory__ = ("rtsrupscale", 0, RtsrUpscale)  # rank 0: GST_RANK_NONE, used when named
