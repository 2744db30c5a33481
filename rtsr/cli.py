"""The `rtsr` command. Only this module prints; everything below it logs or raises RtsrError.

argparse (standard library) parses: sub-commands, typed options and --help are all it needs to
do here, so no extra dependency is taken for it.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from rtsr.backends import ALIASES, BACKENDS, canonical
from rtsr.devices import PRECISIONS
from rtsr.errors import RtsrError

log = logging.getLogger("rtsr")


def _backend_name(text: str) -> str:
    """--backend: a backend, an alias or vulkan:N (argparse's choices cannot say N)."""
    if canonical(text) in ("auto", *BACKENDS):
        return text
    raise argparse.ArgumentTypeError(f"invalid choice: '{text}' (choose from auto, {', '.join((*BACKENDS, *ALIASES))}, "
                                     "vulkan:N)")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="shipped model name or .pt weights path (default: srgan-x4-steady; "
                                                 "srgan-x4-clean for pictures)")
    p.add_argument("--backend", default="auto", type=_backend_name,
                   metavar="{" + ",".join(("auto", *BACKENDS, *ALIASES, "vulkan:N")) + "}",
                   help="auto: the fastest here, measured once per machine and model (rtsr info shows it); "
                        "trt = tensorrt; vulkan:N = Vulkan device N")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU if there is one)")
    p.add_argument("--tile", type=int, default=None, help="largest input tile side in pixels")
    p.add_argument("--precision", default="auto", choices=PRECISIONS,
                   help="auto: fp16 on CUDA; on the CPU bf16 where it is native, else fp32 (rtsr info says which)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtsr", description="real-time video and image super-resolution (SRGAN)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what rtsr decides (backend, tiles, ...)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upscale", help="upscale a video or an image")
    up.add_argument("inputs", type=Path, nargs="+", metavar="INPUT", help="videos and/or images")
    up.add_argument("-o", "--output", type=Path,
                    help="output file (one input) or existing folder (several); default: NAME_x4.EXT beside each input")
    _add_model_options(up)
    up.add_argument("--overwrite", action="store_true", help="replace an existing output")
    up.add_argument("--batch", type=int, default=None, help="frames per model call (video)")
    up.add_argument("--codec", default="libx264", help="video encoder (libx264, libx265, libsvtav1, h264_nvenc...)")
    up.add_argument("--crf", type=int, default=None,
                    help="encoder quality, lower is better (default 18; libx264/libx265/NVENC 0-51, libsvtav1 1-63)")
    up.add_argument("--preset", default=None, help="encoder speed preset (default veryfast; libsvtav1 0-13, NVENC p1-p7)")
    up.add_argument("--pix-fmt", help="output pixel format (default: yuv420p; yuv420p10le for a 10-bit source "
                         "with an HEVC/AV1/VP9 encoder)")
    up.add_argument("--start", type=float, default=None, help="start time in seconds")
    up.add_argument("--end", type=float, default=None, help="end time in seconds")
    up.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    seg = up.add_argument_group("segmented runs (a video cut at keyframes, its segments upscaled in parallel "
                                "and joined; rerunning the same command resumes)")
    seg.add_argument("--workers", type=int, default=None, metavar="N",
                     help="N local worker processes, each with its own model and a share of the cores")
    seg.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                     help="Ray actors (one per GPU, else per node) on the cluster at ADDRESS, at RAY_ADDRESS, or "
                          "on a local Ray; needs pip install 'rtsr[ray]'")
    again = seg.add_mutually_exclusive_group()
    again.add_argument("--resume", dest="fresh", action="store_false", default=False,
                       help="keep the segments an earlier run of the same command finished (the default)")
    again.add_argument("--fresh", action="store_true", help="discard them and start over")
    seg.add_argument("--work-dir", type=Path, default=None,
                     help="where the work folder goes (default: .rtsr-work beside the output; on a cluster, "
                          "storage every node sees)")
    seg.add_argument("--segment-seconds", type=float, default=None, metavar="S",
                     help="about S seconds per segment (default 10-30, at least 4 per worker)")

    sub.add_parser("models", help="list the shipped models")
    sub.add_parser("info", help="versions, devices and which backends can run here")

    be = sub.add_parser("build-engine", help="build (or find cached) the TensorRT FP16 engine for a model")
    be.add_argument("--model", default=None)
    be.add_argument("--device", default="cuda")
    # without shape options: the profile `rtsr upscale` asks for on CUDA (its batch, tiles with their
    # overlap), so the plan built here is the one a later upscale finds in the cache
    be.add_argument("--min", dest="min_shape", default=None, help="smallest input WxH (e.g. 64x64)")
    be.add_argument("--opt", dest="opt_shape", default=None, help="input WxH tuned for (e.g. 480x270)")
    be.add_argument("--max", dest="max_shape", default=None, help="largest input WxH (e.g. 960x540)")
    be.add_argument("--batch", type=int, default=None, help="largest batch")
    be.add_argument("--workspace", type=int, default=4096, help="builder workspace in MiB")
    be.add_argument("--route", default="onnx", choices=("onnx", "torch-tensorrt"),
                    help="onnx: export + TensorRT's OnnxParser; torch-tensorrt: torch.export + torch-tensorrt "
                         "(needs torch-tensorrt built for this torch)")

    pv = sub.add_parser("preview", help="live upscaled preview of a webcam, stream or file")
    pv.add_argument("--source", default="0", help="camera index, /dev/videoN, file or URL")
    _add_model_options(pv)
    pv.add_argument("--capture-size", default=None, help="ask the camera for WxH")
    pv.add_argument("--fps", type=float, default=None, help="cap the display rate")
    pv.add_argument("--compare", default="split", choices=("split", "side", "off"))
    pv.add_argument("--record", type=Path, default=None, help="write what is upscaled to this video")
    pv.add_argument("--max-frames", type=int, default=None)
    pv.add_argument("--headless", action="store_true", help="no window (record or measure)")

    vs = sub.add_parser("vs-script", help="write a VapourSynth script (.vpy) that upscales a video")
    vs.add_argument("input", type=Path, metavar="INPUT", help="the video the script reads")
    vs.add_argument("-o", "--output", type=Path, default=None, help="the script (default: INPUT's name .vpy beside it)")
    vs.add_argument("--model", default=None, help="shipped model name or .pt weights path (default: srgan-x4-steady)")
    vs.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU if there is one)")
    vs.add_argument("--tile", type=int, default=None, help="largest input tile side in pixels")
    vs.add_argument("--batch", type=int, default=1, help="frames per model call")
    vs.add_argument("--overwrite", action="store_true", help="replace an existing script")
    sub.add_parser("gst-path", help="print the exports that let GStreamer load the rtsrupscale element")
    return parser


class _ModelError(RtsrError):
    """The model or backend could not load: no input can go on."""


def cmd_upscale(args: argparse.Namespace) -> int:
    """Each input in turn, with one loaded model per kind (pictures, videos). With several inputs a
    failed one is reported and the rest go on; the exit code says whether all succeeded."""
    from rtsr.settings import load_settings
    from rtsr.upscaler import Upscaler
    from rtsr.video.options import encode_options

    if args.batch is not None and args.batch < 1:
        raise RtsrError("--batch must be at least 1")
    several = len(args.inputs) > 1
    into_folder = args.output is not None and args.output.is_dir()
    if several and args.output is not None and not into_folder:
        raise RtsrError(f"with several inputs, -o must be an existing folder ({args.output} is not)")
    args.encode = encode_options(args.codec, args.crf, args.preset, args.pix_fmt)  # before any work
    if args.workers is None and args.ray is None:
        given = [name for name, value in (("--fresh", args.fresh), ("--work-dir", args.work_dir),
                                          ("--segment-seconds", args.segment_seconds)) if value]
        if given:
            raise RtsrError(f"{' and '.join(given)}: only for segmented runs (add --workers N or --ray)")
    settings = load_settings()
    upscalers: dict[str, Upscaler] = {}

    def loaded(picture: bool) -> Upscaler:
        """The model for a picture or a video, loaded once after the first input of its kind is known to
        be usable. Without --model, pictures get the sharper picture model, videos the steady one."""
        model = args.model or (settings.picture_model if picture else settings.model)
        if model not in upscalers:
            try:
                upscalers[model] = Upscaler(model, backend=args.backend, device=args.device, tile=args.tile,
                                            batch=args.batch, precision=args.precision, settings=settings)
            except RtsrError as exc:
                raise _ModelError(str(exc)) from None
        return upscalers[model]

    def target(default: Path) -> Path:
        if args.output is None:
            return default
        return args.output / default.name if into_folder else args.output

    failed = 0
    for src in args.inputs:
        try:
            _upscale_file(src, args, loaded, target)
        except _ModelError:
            raise
        except RtsrError as exc:
            if not several:
                raise
            print(f"rtsr: error: {exc}", file=sys.stderr)
            failed += 1
    if failed:
        raise RtsrError(f"{failed} of {len(args.inputs)} inputs failed")
    return 0


def _upscale_file(src: Path, args: argparse.Namespace, loaded, target) -> None:
    """One image or video: checked before the model loads, written atomically, one summary line."""
    from rtsr.images import is_image_path

    if not src.exists():
        raise RtsrError(f"input not found: {src}")
    if src.is_dir():
        raise RtsrError(f"input {src} is a directory, not a video or image")
    if is_image_path(src):
        _upscale_image(src, args, loaded, target)
    else:
        _upscale_video(src, args, loaded, target)


def _tile_bar(args: argparse.Namespace, name: str):
    """A progress callback over model calls for a picture that takes several (a large one in
    tiles, an animation): a bar on a terminal, nothing otherwise. Returns (callback, close)."""
    from tqdm import tqdm

    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            if total < 2:
                return
            bar = tqdm(total=total, unit="tile", disable=args.quiet or not sys.stderr.isatty(),
                       dynamic_ncols=True, desc=name, leave=False)
        bar.update(done - bar.n)

    return update, lambda: bar is not None and bar.close()


def _upscale_image(src: Path, args: argparse.Namespace, loaded, target) -> None:
    """A still (8 or 16 bits, alpha kept) or an animated WebP/PNG (every frame, durations kept)."""
    import cv2

    from rtsr.images import Animation, check_image_output, read_animation, read_image, write_animation, write_image
    from rtsr.paths import check_destination, check_output, default_output

    # an unreadable picture, an output it cannot take or a folder that takes nothing: one line
    # before the model is loaded
    animation = read_animation(src)
    frames = animation.frames if animation else [read_image(src)]
    h, w = frames[0][0].shape[:2]
    check_destination(target(default_output(src, 1)))
    check_image_output(target(default_output(src, 1)), w, h, animated=animation is not None)
    upscaler = loaded(picture=True)
    out = target(default_output(src, upscaler.scale))
    check_output(src, out, args.overwrite)
    check_image_output(out, w * upscaler.scale, h * upscaler.scale, animated=animation is not None)
    start = time.perf_counter()
    progress, close_bar = _tile_bar(args, src.name)
    calls = upscaler.tile_count(h, w)
    results = []
    try:
        for i, (rgb, alpha) in enumerate(frames):
            result = upscaler(rgb, progress=lambda done, _, i=i: progress(i * calls + done, len(frames) * calls))
            if alpha is not None:
                alpha = cv2.resize(alpha, (result.shape[1], result.shape[0]), interpolation=cv2.INTER_CUBIC)
            results.append((result, alpha))
    finally:
        close_bar()
    if animation:
        write_animation(out, Animation(results, animation.durations, animation.loop_count))
    else:
        write_image(out, *results[0], reuse=True)
    depth = " 16-bit" if frames[0][0].dtype.itemsize == 2 and out.suffix.lower() == ".png" and not animation else ""
    what = f", {len(frames)} frames" if animation else ""
    print(f"{src} {w}x{h}{what} -> {out} {w * upscaler.scale}x{h * upscaler.scale}{depth} "
          f"({upscaler.card.name}, {upscaler.backend.name} on {upscaler.device}, {time.perf_counter() - start:.2f} s)")


def _upscale_video(src: Path, args: argparse.Namespace, loaded, target) -> None:
    from tqdm import tqdm

    from rtsr.paths import check_destination, check_output
    from rtsr.video.pipeline import VideoJob, default_video_output, upscale_video
    from rtsr.video.reader import probe_video

    with _blaming_a_cut(src):
        info = probe_video(src)  # a bad input is one line before the model is loaded
    check_destination(target(default_video_output(src, 1, args.codec)))
    if args.workers is not None or args.ray is not None:
        _upscale_video_segmented(src, args, target)
        return
    upscaler = loaded(picture=False)
    dst = target(default_video_output(src, upscaler.scale, args.codec))
    check_output(src, dst, args.overwrite)
    job = VideoJob(args.encode, args.batch, args.start, args.end, args.max_frames)
    total = info.frames
    if args.max_frames is not None and total:
        total = min(total, args.max_frames)
    with tqdm(total=total, unit="frame", disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True,
              desc=src.name if len(args.inputs) > 1 else None) as bar:
        with _blaming_a_cut(src):
            stats = upscale_video(src, dst, upscaler, job, progress=bar.update)
    skipped = _repairs(stats.skipped_packets, stats.repaired_frames)
    print(f"{dst}: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.2f} fps end to end, "
          f"{upscaler.card.name} x{upscaler.scale} via {upscaler.backend.name} on {upscaler.device}){skipped}"
          f"{_ends_early(src, info, stats, args)}")


def _repairs(skipped_packets: int, repaired_frames: int) -> str:
    """The summary's note of what a damaged input cost."""
    return "".join([f", skipped {skipped_packets} corrupt packets" if skipped_packets else "",
                    f", retimed {repaired_frames} frames whose timestamps went backwards" if repaired_frames else ""])


def _upscale_video_segmented(src: Path, args: argparse.Namespace, target) -> None:
    """Segments on a local pool or on Ray; each worker loads the model, this process does not."""
    from tqdm import tqdm

    from rtsr.paths import check_output
    from rtsr.segments import ProcessPool, RayExecutor, SegmentPolicy, UpscalerSpec, model_scale, upscale_segmented
    from rtsr.video.pipeline import VideoJob, default_video_output

    if args.segment_seconds is not None and args.segment_seconds <= 0:
        raise RtsrError("--segment-seconds must be more than 0")
    # a weights file by absolute path: Ray actors elsewhere do not share this working folder
    model = str(Path(args.model).resolve()) if args.model and Path(args.model).is_file() else args.model
    spec = UpscalerSpec(model, args.backend, args.device, args.tile, args.precision, args.batch)
    _, scale = model_scale(spec)
    dst = target(default_video_output(src, scale, args.codec))
    check_output(src, dst, args.overwrite)
    executor = (RayExecutor(spec, args.ray or None, args.workers) if args.ray is not None
                else ProcessPool(spec, args.workers))
    job = VideoJob(args.encode, args.batch, args.start, args.end, args.max_frames)
    with tqdm(unit="frame", disable=args.quiet or not sys.stderr.isatty(), dynamic_ncols=True,
              desc=src.name if len(args.inputs) > 1 else None) as bar:
        with _blaming_a_cut(src):
            stats = upscale_segmented(src, dst, spec, executor, job, args.work_dir, args.fresh,
                                      SegmentPolicy(args.segment_seconds), progress=bar.update)
    kept = stats.segments - len(stats.ran)
    skipped = _repairs(stats.skipped_packets, stats.repaired_frames)
    print(f"{dst}: {stats.frames} frames in {stats.seconds:.1f} s ({stats.fps:.2f} fps end to end over the "
          f"{stats.ran_frames} upscaled now, {len(stats.ran)} of {stats.segments} segments run on "
          f"{len(stats.nodes)} worker(s)"
          f"{f', {kept} kept from an earlier run' if kept else ''}; join {stats.join_seconds:.1f} s){skipped}")


@contextlib.contextmanager
def _blaming_a_cut(src: Path):
    """An input's error says so where the file is cut short (a broken download, say)."""
    from rtsr.video.integrity import cut_short

    try:
        yield
    except RtsrError as exc:
        reason = cut_short(src)
        if reason is None:
            raise
        raise RtsrError(f"{exc} (the file is cut short: {reason})") from None


def _ends_early(src: Path, info, stats, args: argparse.Namespace) -> str:
    """The summary's warning for a truncated input (a cut download or copy): fewer frames than the
    container counts or its duration implies, or sizes that run past the end of the file."""
    from rtsr.video.integrity import cut_short

    warning = ""
    expected, exact = (info.container_frames, True) if info.container_frames else (info.frames, False)
    if expected and args.start is None and args.end is None:
        if args.max_frames is not None:
            expected = min(expected, args.max_frames)
        read = stats.frames
        # an exact count allows a frame or so that decoders drop (edit lists); an estimate from
        # the duration, which may include a longer audio track, a tenth
        # a frame count also counts the empty slots of a sparse AVI: the time the frames reach
        # has the last word where the container says where the video ends
        short_in_time = info.end is None or stats.frames_end is None or (
            info.end - stats.frames_end > 2 / float(info.average_rate or 25))
        if expected - read > (max(1, expected // 100) if exact else max(2, expected // 10)) and short_in_time:
            warning = f"; input ends early: {read} of {'' if exact else 'about '}{expected} frames"
    reason = cut_short(src)
    if reason:
        warning += f"; the input file is cut short ({reason}): frames or tracks may be missing"
    return warning


def cmd_models(_: argparse.Namespace) -> int:
    from rtsr.locations import weights_dir
    from rtsr.models import Generator, GeneratorConfig
    from rtsr.models.weights import read_card, shipped_models
    from rtsr.settings import load_settings

    models = shipped_models()
    if not models:
        print(f"no models shipped in {weights_dir()}")
        return 1
    settings = load_settings()
    defaults = {settings.model: "video", settings.picture_model: "pictures"}
    width = max(16, *(len(name) for name in models))
    print(f"{'model':<{width}} {'scale':>5} {'blocks':>6} {'ch':>4} {'params':>8} {'size':>8}  {'kind':<5} "
          f"{'PSNR-Y':>7} {'vs bicubic':>10} {'SSIM-Y':>7}  {'H.264 CRF 23':>12}  {'flicker (bicubic)':>17}  default for")
    for name, path in models.items():
        card = read_card(path)
        c, m = card.config, card.metrics
        params = sum(p.numel() for p in Generator(GeneratorConfig.from_dict(c)).parameters())
        psnr = f"{m['psnr_y']:.2f}" if "psnr_y" in m else "-"
        gain = f"{m['gain_vs_bicubic_db']:+.2f} dB" if "gain_vs_bicubic_db" in m else "-"
        ssim = f"{m['ssim_y']:.4f}" if "ssim_y" in m else "-"
        h264 = m.get("h264_crf23")
        compressed = f"{h264['psnr_y'] - h264['bicubic']['psnr_y']:+.2f} dB" if h264 else "-"
        steady = m.get("temporal", {}).get("h264_crf23")
        flicker = f"{steady['flicker']:.2f} ({steady['bicubic']:.2f})" if steady else "-"
        print(f"{name:<{width}} {'x' + str(c['scale']):>5} {c['num_blocks']:>6} {c['channels']:>4} "
              f"{params / 1e6:>7.2f}M {path.stat().st_size / 2**20:>6.1f}MB  {card.kind:<5} {psnr:>7} {gain:>10} "
              f"{ssim:>7}  {compressed:>12}  {flicker:>17}  {defaults.get(name, '')}")
    print("PSNR/SSIM: held-out photos, Y channel, x4 bicubic-downscaled input; H.264 CRF 23: the same input "
          "through x264 first, gain vs bicubic; flicker: the photos panned by a sub-pixel motion through x264 "
          "CRF 23, RMS Y change between frames after undoing the pan, lower is steadier (python -m train.evaluate)")
    print("what each is for (its card's description; pick one with --model):")
    for name, path in models.items():
        print(f"  {name}: {read_card(path).description or '-'}")
    return 0


def cmd_info(_: argparse.Namespace) -> int:
    from rtsr.info import collect_info

    for key, value in collect_info().items():
        print(f"{key + ':':<22} {value}")
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    """One line of error where TensorRT or a GPU is missing; else the cached or built plan's path."""
    from rtsr.backends.tensorrt import BuildProgress, ShapeProfile, build_engine, unavailable_reason
    from rtsr.devices import resolve_device
    from rtsr.memory import fit_to_device
    from rtsr.tiling import receptive_radius
    from rtsr.models.weights import load_weights, resolve_model
    from rtsr.settings import load_settings

    device = resolve_device(args.device)
    reason = unavailable_reason(device)
    if reason:
        raise RtsrError(f"cannot build a TensorRT engine: {reason}")
    settings = load_settings()
    generator, card = load_weights(resolve_model(args.model or settings.model))
    if (args.min_shape, args.opt_shape, args.max_shape, args.batch) == (None, None, None, None):
        overlap = settings.tile_overlap if settings.tile_overlap is not None else receptive_radius(generator.config)
        tile, batch = fit_to_device(generator.config, device, settings.tile_for("cuda"), settings.batch_for("cuda"),
                                    overlap, 2)  # as Upscaler fits its defaults, so upscale finds this plan
        profile = ShapeProfile.for_inputs(batch, tile + 2 * overlap)
    else:
        profile = ShapeProfile.from_sizes(args.min_shape or "64x64", args.opt_shape or "480x270",
                                          args.max_shape or "960x540", args.batch or 4)
    path = build_engine(generator, device, profile, args.workspace,
                        progress=BuildProgress(show_bars=sys.stderr.isatty()), route=args.route)
    print(f"{card.name}: {path}")
    return 0


def cmd_preview(args: argparse.Namespace) -> int:
    from rtsr.paths import check_output
    from rtsr.preview import PreviewOptions, check_display, open_capture, parse_source, run_preview
    from rtsr.settings import parse_size
    from rtsr.upscaler import Upscaler

    opts = PreviewOptions(source=parse_source(args.source),
                          capture_size=parse_size(args.capture_size) if args.capture_size else None,
                          fps=args.fps, compare=args.compare, record=args.record, max_frames=args.max_frames,
                          headless=args.headless)
    if opts.record:
        check_output(Path(str(opts.source)), opts.record, overwrite=False)
    # the display and the source first: each mistake is named as itself, before the model loads
    check_display(opts)
    cap = open_capture(opts.source, opts.capture_size, opts.fps)
    try:
        upscaler = Upscaler(args.model, backend=args.backend, device=args.device, tile=args.tile,
                            precision=args.precision)
    except BaseException:
        cap.release()
        raise
    print(run_preview(upscaler, opts, cap).summary())
    return 0


def cmd_vs_script(args: argparse.Namespace) -> int:
    from rtsr.hosts import vapoursynth_script

    if not args.input.is_file():
        raise RtsrError(f"input not found: {args.input}")
    if args.batch < 1:
        raise RtsrError("--batch must be at least 1")
    out = args.output or args.input.with_suffix(".vpy")
    if out.exists() and not args.overwrite:
        raise RtsrError(f"{out} exists (--overwrite replaces it)")
    try:
        out.write_text(vapoursynth_script(str(args.input.resolve()), args.model, args.device, args.tile, args.batch))
    except OSError as exc:
        raise RtsrError(f"cannot write {out}: {exc.strerror}") from None
    print(f"wrote {out}; watch it: vspipe -c y4m {out} - | mpv -")
    return 0


def cmd_gst_path(_: argparse.Namespace) -> int:
    """`eval "$(rtsr gst-path)"`: GStreamer finds the element, its Python finds this rtsr and torch."""
    import shlex
    import sysconfig

    from rtsr.hosts import GST_PLUGIN_DIR

    paths = sysconfig.get_paths()
    site = os.pathsep.join(dict.fromkeys((paths["purelib"], paths["platlib"])))
    print(f"# GStreamer's Python plugin loader must run Python {sys.version_info.major}.{sys.version_info.minor}, "
          f"as this rtsr does (Debian 12's python3-gst-1.0: 3.11)")
    print(f'export GST_PLUGIN_PATH={shlex.quote(str(GST_PLUGIN_DIR))}"${{GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}}"')
    print(f"export RTSR_GST_SITE={shlex.quote(site)}")
    return 0


COMMANDS = {"upscale": cmd_upscale, "models": cmd_models, "info": cmd_info,
            "build-engine": cmd_build_engine, "preview": cmd_preview, "vs-script": cmd_vs_script,
            "gst-path": cmd_gst_path}


class Terminated(BaseException):
    """SIGTERM (kill, timeout, systemctl/docker stop), raised in the main thread so that it
    unwinds like Ctrl-C: temporary files removed, one line, exit 143."""


def _raise_terminated(signum: int, _frame: object) -> None:
    signal.signal(signum, signal.SIG_IGN)  # a second SIGTERM must not cut the cleanup short
    raise Terminated(signum)


def _media_error(exc: Exception) -> bool:
    """An FFmpeg error (a damaged input no earlier check caught). PyAV is not imported for this:
    loaded beside OpenCV's Qt, as `rtsr preview` would then, its bundled libraries hang the window."""
    av = sys.modules.get("av")
    return av is not None and isinstance(exc, av.error.FFmpegError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="rtsr: %(message)s", stream=sys.stderr)
    # SVT-AV1 prints a ~20-line banner per file unless told less; only the program, never the
    # library, may change the process environment
    os.environ.setdefault("SVT_LOG", "1")
    main_thread = threading.current_thread() is threading.main_thread()  # signals go to the main thread only
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        return COMMANDS[args.command](args)
    except RtsrError as exc:
        print(f"rtsr: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        if not _media_error(exc):
            raise
        print(f"rtsr: error: {exc}", file=sys.stderr)  # outputs are atomic: nothing partial is left
        return 2
    except KeyboardInterrupt:
        print("rtsr: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print("rtsr: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
