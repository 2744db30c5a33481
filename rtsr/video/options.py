"""Encoder settings checked before the model loads.

A wrong --crf, --preset or --pix-fmt is one line at the start, not an encoder error in the middle
of a run, a value clamped in silence, or an option the encoder never sees.
"""
from __future__ import annotations

import av

from rtsr.errors import RtsrError
from rtsr.video.writer import EncodeOptions, check_encoder

X26X_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow",
                "placebo")
# what EncodeOptions.codec_options passes on, per encoder: (lowest crf, highest crf, presets)
_RULES: dict[str, tuple[int, int, tuple[str, ...]]] = {
    "libx264": (0, 51, X26X_PRESETS),
    "libx265": (0, 51, X26X_PRESETS),
    "libsvtav1": (1, 63, tuple(str(i) for i in range(14))),    # 0 slowest .. 13 fastest
}
_NVENC = (0, 51, tuple(f"p{i}" for i in range(1, 8)))         # cq; p1 fastest .. p7 slowest


def _rules(codec: str) -> tuple[int, int, tuple[str, ...]] | None:
    return _NVENC if codec.endswith("_nvenc") else _RULES.get(codec)


def check_pix_fmt(codec: str, pix_fmt: str) -> None:
    try:
        av.VideoFormat(pix_fmt)
        av.VideoFrame(16, 16, "yuv420p").reformat(format=pix_fmt)  # the writer converts into it
    except (ValueError, av.error.FFmpegError):
        raise RtsrError(f"unknown pixel format '{pix_fmt}' (e.g. yuv420p, yuv420p10le)") from None
    takes = [f.name for f in av.Codec(codec, "w").video_formats or []]
    if takes and pix_fmt not in takes:
        raise RtsrError(f"{codec} cannot encode {pix_fmt} (it takes {', '.join(takes)})")


def encode_options(codec: str, crf: int | None = None, preset: str | None = None,
                   pix_fmt: str | None = None) -> EncodeOptions:
    """EncodeOptions for what a user asked for (None: the default), or one line saying what is wrong."""
    check_encoder(codec)
    rules = _rules(codec)
    if rules is None:
        given = [name for name, value in (("--crf", crf), ("--preset", preset)) if value is not None]
        if given:
            raise RtsrError(f"{' and '.join(given)} cannot be passed to {codec} (rtsr sets quality and speed for "
                            f"libx264, libx265, libsvtav1 and the NVENC encoders)")
    else:
        low, high, presets = rules
        if crf is not None and not low <= crf <= high:
            raise RtsrError(f"--crf {crf} is out of range for {codec}: {low} to {high}, lower is better")
        if preset is not None and preset not in presets:
            raise RtsrError(f"--preset '{preset}' is not a {codec} preset ({', '.join(presets)})")
    if pix_fmt is not None:
        check_pix_fmt(codec, pix_fmt)
    default = EncodeOptions()
    return EncodeOptions(codec, default.crf if crf is None else crf, default.preset if preset is None else preset,
                         pix_fmt)
