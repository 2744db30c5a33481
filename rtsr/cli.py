"""The `rtsr` command. Only this module prints; everything below it logs or raises RtsrError.

argparse (standard library) parses: sub-commands, typed options and --help are all it needs to
do here, so no extra dependency is taken for it.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from rtsr.backends import ALIASES, BACKENDS
from rtsr.errors import RtsrError

log = logging.getLogger("rtsr")


def _add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="shipped model name or .pt weights path (default: srgan-x4)")
    p.add_argument("--backend", default="auto", choices=("auto", *BACKENDS, *ALIASES),
                   help="auto: TensorRT where it can run, else PyTorch (trt = tensorrt)")
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the GPU if there is one)")
    p.add_argument("--tile", type=int, default=None, help="largest input tile side in pixels")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtsr", description="real-time video and image super-resolution (SRGAN)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what rtsr decides (backend, tiles, ...)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("upscale", help="upscale a video or an image")
    up.add_argument("input", type=Path)
    up.add_argument("-o", "--output", type=Path, help="default: NAME_x4.EXT beside the input")
    _add_model_options(up)
    up.add_argument("--overwrite", action="store_true", help="replace an existing output")
    up.add_argument("--batch", type=int, default=None, help="frames per model call (video)")
    up.add_argument("--codec", default="libx264", help="video encoder (libx264, libx265, libsvtav1, h264_nvenc...)")
    up.add_argument("--crf", type=int, default=18, help="encoder quality, lower is better")
    up.add_argument("--preset", default="veryfast", help="encoder speed preset")
    up.add_argument("--pix-fmt", help="output pixel format (default: yuv420p; yuv420p10le for a 10-bit source "
                         "with an HEVC/AV1/VP9 encoder)")
    up.add_argument("--start", type=float, default=None, help="start time in seconds")
    up.add_argument("--end", type=float, default=None, help="end time in seconds")
    up.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    up.add_argument("-q", "--quiet", action="store_true", help="no progress bar")

    sub.add_parser("models", help="list the shipped models")
    sub.add_parser("info", help="versions, devices and which backends can run here")

    be = sub.add_parser("build-engine", help="build (or find cached) the TensorRT FP16 engine for a model")
    be.add_argument("--model", default=None)
    be.add_argument("--device", default="cuda")
    be.add_argument("--min", dest="min_shape", default="64x64", help="smallest input WxH")
    be.add_argument("--opt", dest="opt_shape", default="480x270", help="input WxH tuned for")
    be.add_argument("--max", dest="max_shape", default="960x540", help="largest input WxH")
    be.add_argument("--batch", type=int, default=4, help="largest batch")
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
    return parser


def cmd_upscale(args: argparse.Namespace) -> int:
    from rtsr.images import is_image_path, read_image, write_image
    from rtsr.paths import check_output, default_output
    from rtsr.upscaler import Upscaler

    src: Path = args.input
    if not src.exists():
        raise RtsrError(f"input not found: {src}")
    if src.is_dir():
        raise RtsrError(f"input {src} is a directory, not a video or image")
    if is_image_path(src):
        rgb, alpha = read_image(src)
        upscaler = Upscaler(args.model, backend=args.backend, device=args.device, tile=args.tile)
        out = args.output or default_output(src, upscaler.scale)
        check_output(src, out, args.overwrite)
        start = time.perf_counter()
        result = upscaler(rgb)
        if alpha is not None:
            import cv2

            alpha = cv2.resize(alpha, (result.shape[1], result.shape[0]), interpolation=cv2.INTER_CUBIC)
        write_image(out, result, alpha)
        print(f"{src} {rgb.shape[1]}x{rgb.shape[0]} -> {out} {result.shape[1]}x{result.shape[0]} "
              f"({upscaler.card.name}, {upscaler.backend.name} on {upscaler.device}, {time.perf_counter() - start:.2f} s)")
        return 0
    from rtsr.video.pipeline import upscale_video_cli

    return upscale_video_cli(args)


def cmd_models(_: argparse.Namespace) -> int:
    from rtsr.models.weights import read_card, shipped_models

    models = shipped_models()
    if not models:
        print("no models shipped in engines/")
        return 1
    print(f"{'model':<16} {'scale':>5} {'blocks':>6} {'ch':>4} {'params':>8} {'size':>8}  {'kind':<5} "
          f"{'PSNR-Y':>7} {'vs bicubic':>10} {'SSIM-Y':>7}")
    for name, path in models.items():
        card = read_card(path)
        c, m = card.config, card.metrics
        from rtsr.models import Generator, GeneratorConfig

        params = sum(p.numel() for p in Generator(GeneratorConfig.from_dict(c)).parameters())
        psnr = f"{m['psnr_y']:.2f}" if "psnr_y" in m else "-"
        gain = f"{m['gain_vs_bicubic_db']:+.2f} dB" if "gain_vs_bicubic_db" in m else "-"
        ssim = f"{m['ssim_y']:.4f}" if "ssim_y" in m else "-"
        print(f"{name:<16} {'x' + str(c['scale']):>5} {c['num_blocks']:>6} {c['channels']:>4} "
              f"{params / 1e6:>7.2f}M {path.stat().st_size / 2**20:>6.1f}MB  {card.kind:<5} {psnr:>7} {gain:>10} {ssim:>7}")
    print("PSNR/SSIM: held-out photos, Y channel, x4 bicubic-downscaled input (python -m train.evaluate)")
    return 0


def cmd_info(_: argparse.Namespace) -> int:
    from rtsr.info import collect_info

    for key, value in collect_info().items():
        print(f"{key + ':':<22} {value}")
    return 0


def cmd_build_engine(args: argparse.Namespace) -> int:
    from rtsr.backends.tensorrt import build_engine_cli

    return build_engine_cli(args)


def cmd_preview(args: argparse.Namespace) -> int:
    from rtsr.preview import preview_cli

    return preview_cli(args)


COMMANDS = {"upscale": cmd_upscale, "models": cmd_models, "info": cmd_info,
            "build-engine": cmd_build_engine, "preview": cmd_preview}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="rtsr: %(message)s", stream=sys.stderr)
    try:
        return COMMANDS[args.command](args)
    except RtsrError as exc:
        print(f"rtsr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtsr: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
