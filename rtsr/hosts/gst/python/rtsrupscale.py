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
try:
    from gi.repository import GObject

    from rtsr.hosts.gstreamer import RtsrUpscale
except ImportError as exc:
    logging.getLogger("rtsr").error("rtsrupscale: %s in GStreamer's Python %d.%d; run eval \"$(rtsr gst-path)\" "
                                    "with an rtsr installed for this Python", exc, *sys.version_info[:2])
    raise
GObject.type_register(RtsrUpscale)
__gstelementfactory__ = ("rtsrupscale", 0, RtsrUpscale)  # rank 0: GST_RANK_NONE, used when named
