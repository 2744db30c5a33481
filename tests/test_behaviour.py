"""Behaviour the rest of the suite let slip (issue 19): each test here kills mutants that survived it.

Checked against referees outside the code under test: the input file's own packet times, FFmpeg's
swscale (through PyAV) for the YUV -> RGB matrices and ranges, the chroma siting geometry of
MPEG-2/H.264 4:2:0 for a single-pixel impulse, the cosine formula's first/middle/last values, and
the generator's weights before and after one GAN step. tests/test_mutants.py re-applies the
mutants these tests kill and checks that they still do.
"""
from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from av.video.reformatter import Interpolation

from rtsr import Upscaler
from rtsr.models.config import DiscriminatorConfig
from rtsr.models.srgan import Discriminator
from rtsr.video.color import ColorSpec, rgb_to_yuv420, yuv_to_rgb
from rtsr.video.pipeline import VideoJob, upscale_video
from rtsr.video.synth import write_clip

# ---------------------------------------------------------------------------------------------
# (a, b) copied audio with --start/--end/--max-frames: kept where the range is, shifted by --start

CLIP_PTS = [0, 1, 2, 4, 5, 7, 8, 9, 12, 13, 14, 16]  # 24 fps ticks, variable frame rate


@pytest.fixture(scope="module")
def aac_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """32x24 H.264 frames at the times above with an AAC track (1024-sample packets at 48 kHz)."""
    path = tmp_path_factory.mktemp("aac") / "clip.mp4"
    frames = [np.full((24, 32, 3), (10 * i, 128, 255 - 10 * i), np.uint8) for i in range(len(CLIP_PTS))]
    write_clip(path, frames, fps=24, pts=CLIP_PTS, time_base=Fraction(1, 24))
    return path


def audio_packets(path: Path) -> list[tuple[Fraction, bytes]]:
    """(presentation time in seconds, payload) of each audio packet, as the demuxer reads them."""
    with av.open(str(path)) as c:
        return [(p.pts * p.time_base, bytes(p)) for p in c.demux(audio=0) if p.size]


@pytest.mark.parametrize("start, end, max_frames, stop", [
    # --end between frames (10.5/24): the reader stops at the frame at 12/24, so the audio between
    # the end and that frame is kept out by the --end filter alone
    (Fraction(4, 24), Fraction(21, 48), None, Fraction(21, 48)),
    # --max-frames 3 from 4/24: frames at 4, 5, 7; the audio ends where the next frame (8) begins
    (Fraction(4, 24), None, 3, Fraction(8, 24)),
    # --end only: nothing is shifted
    (None, Fraction(21, 48), None, Fraction(21, 48)),
], ids=["start-end", "start-max-frames", "end"])
def test_copied_audio_is_the_inputs_within_the_range_shifted_by_start(
        tmp_path: Path, aac_clip: Path, tiny_weights: Path, start, end, max_frames, stop) -> None:
    out = tmp_path / "out.mp4"
    upscale_video(aac_clip, out, Upscaler(tiny_weights, device="cpu"),
                  VideoJob(start=float(start) if start else None, end=float(end) if end else None,
                           max_frames=max_frames))
    source = audio_packets(aac_clip)
    # without --start everything from the top is kept, the AAC priming packet (before 0) included
    expected = [(t - (start or 0), data) for t, data in source if (start is None or t >= start) and t < stop]
    got = audio_packets(out)
    assert len(expected) >= 5 and len(got) < len(source)
    assert [t for t, _ in got] == [t for t, _ in expected]
    assert [d for _, d in got] == [d for _, d in expected]


def test_copied_subtitles_are_kept_trimmed_and_shifted_by_start(tmp_path: Path, tiny_weights: Path) -> None:
    """SubRip cues in Matroska (ms ticks) with --start 4/24 (167 ms) and --end 10.5/24: a cue on screen at
    the start is shown from 0 for what is left of it, one inside moves by the start, the others go."""
    video, srt, src = tmp_path / "v.mp4", tmp_path / "s.srt", tmp_path / "in.mkv"
    frames = [np.full((24, 32, 3), 10 * i, np.uint8) for i in range(len(CLIP_PTS))]
    write_clip(video, frames, fps=24, pts=CLIP_PTS, time_base=Fraction(1, 24), audio=False)
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nshowing\n\n2\n00:00:00,050 --> 00:00:00,100\ngone\n\n"
                   "3\n00:00:00,250 --> 00:00:00,350\ninside\n\n4\n00:00:00,500 --> 00:00:00,600\nafter\n")
    with av.open(str(video)) as v, av.open(str(srt)) as s, av.open(str(src), "w") as out:
        streams = {v.streams.video[0]: out.add_stream_from_template(v.streams.video[0]),
                   s.streams[0]: out.add_stream_from_template(s.streams[0])}
        packets = [p for p in [*v.demux(video=0), *s.demux()] if p.size]
        for p in sorted(packets, key=lambda p: (p.dts if p.dts is not None else p.pts) * p.time_base):
            p.stream = streams[p.stream]
            out.mux(p)
    out = tmp_path / "out.mkv"
    upscale_video(src, out, Upscaler(tiny_weights, device="cpu"), VideoJob(start=4 / 24, end=10.5 / 24))
    with av.open(str(out)) as c:
        cues = [(p.pts * p.time_base, p.duration * p.time_base, bytes(p)) for p in c.demux(subtitles=0) if p.size]
    ms = Fraction(1, 1000)
    assert cues == [(0, (300 - 167) * ms, b"showing"), ((250 - 167) * ms, 100 * ms, b"inside")]


# ---------------------------------------------------------------------------------------------
# (c) the RGB the model sees for BT.601/709/2020, limited and full range, against swscale

SWS_SPACE = {1: "ITU709", 6: "SMPTE170M", 5: "ITU601", 9: "BT2020"}
SWS_RANGE = {1: "MPEG", 2: "JPEG"}
BLOCK = 8  # luma pixels per side of a flat patch
# swscale's exact path (its default fast path is off by up to 3 code values)
SWS_EXACT = Interpolation.BILINEAR | Interpolation.ACCURATE_RND | Interpolation.FULL_CHR_H_INT


def patch_planes(full_range: bool, bit_depth: int = 8, h: int = 48, w: int = 64, seed: int = 0):
    """Y, U, V planes of flat 8x8 patches (4x4 chroma) whose colours span the legal range, saturated
    ones included: inside a patch chroma placement plays no part, so the matrix and range alone decide."""
    rng = np.random.default_rng(seed)
    m = 1 << (bit_depth - 8)
    y_lo, y_hi = (0, 255 * m + m - 1) if full_range else (16 * m, 235 * m)
    c_lo, c_hi = (m, 255 * m + m - 1) if full_range else (16 * m, 240 * m)
    gh, gw = h // BLOCK, w // BLOCK
    y = rng.integers(y_lo, y_hi + 1, (gh, gw))
    u = rng.integers(c_lo, c_hi + 1, (gh, gw))
    v = rng.integers(c_lo, c_hi + 1, (gh, gw))
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    grow = lambda p, k: np.kron(p, np.ones((k, k), int)).astype(dtype)  # noqa: E731
    return grow(y, BLOCK), grow(u, BLOCK // 2), grow(v, BLOCK // 2)


def interior(h: int, w: int) -> np.ndarray:
    """Pixels at least 2 from a patch edge: chroma interpolation does not reach them."""
    yy, xx = np.mgrid[0:h, 0:w] % BLOCK
    return (yy >= 2) & (yy < BLOCK - 2) & (xx >= 2) & (xx < BLOCK - 2)


def swscale_rgb(y, u, v, space: int, color_range: int, bit_depth: int = 8) -> np.ndarray:
    """FFmpeg's own conversion of the planes to RGB in [0, 1], through rgb24."""
    h, w = y.shape
    packed = np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(h * 3 // 2, w)
    frame = av.VideoFrame.from_ndarray(packed, format="yuv420p" if bit_depth == 8 else "yuv420p10le")
    # rgb24 for 10-bit too: swscale's exact path to rgb48 is broken in FFmpeg 8.1 (all 65535)
    rgb = frame.reformat(format="rgb24", src_colorspace=SWS_SPACE[space], src_color_range=SWS_RANGE[color_range],
                         interpolation=SWS_EXACT).to_ndarray()
    return rgb.astype(np.float64) / 255


def model_rgb(y, u, v, spec: ColorSpec) -> np.ndarray:
    planes = [torch.from_numpy(p.astype(np.int16 if spec.bit_depth > 8 else np.uint8))[None] for p in (y, u, v)]
    return yuv_to_rgb(*planes, spec)[0].permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("space", [6, 5, 1, 9], ids=["bt601-smpte170m", "bt601-bt470bg", "bt709", "bt2020"])
@pytest.mark.parametrize("color_range", [1, 2], ids=["limited", "full"])
def test_rgb_the_model_sees_matches_swscale(space: int, color_range: int) -> None:
    y, u, v = patch_planes(color_range == 2)
    spec = ColorSpec.from_tags(space, color_range, 1, 1, y.shape[0])
    diff = np.abs(model_rgb(y, u, v, spec) - swscale_rgb(y, u, v, space, color_range))[interior(*y.shape)] * 255
    # swscale rounds to 8 bits: within a code value (BT.601 read as BT.709 is off by up to ~40,
    # limited range read as full by up to ~30)
    assert diff.max() <= 1.0, diff.max()


@pytest.mark.parametrize("height, like", [(480, 5), (719, 5), (720, 1), (1080, 1)],
                         ids=["480-bt601", "719-bt601", "720-bt709", "1080-bt709"])
def test_untagged_streams_are_read_as_players_read_them(height: int, like: int) -> None:
    """No colour tags: limited range, BT.709 from 720 lines up and BT.601 below, as players assume."""
    y, u, v = patch_planes(False)
    spec = ColorSpec.from_tags(2, 0, 2, 2, height)  # AVCOL_SPC_UNSPECIFIED, AVCOL_RANGE_UNSPECIFIED
    diff = np.abs(model_rgb(y, u, v, spec) - swscale_rgb(y, u, v, like, 1))[interior(*y.shape)] * 255
    assert diff.max() <= 1.0, diff.max()


@pytest.mark.parametrize("space", [9, 1], ids=["bt2020", "bt709"])
@pytest.mark.parametrize("color_range", [1, 2], ids=["limited", "full"])
def test_ten_bit_rgb_the_model_sees_matches_swscale(space: int, color_range: int) -> None:
    y, u, v = patch_planes(color_range == 2, bit_depth=10)
    spec = ColorSpec.from_tags(space, color_range, 1, 1, y.shape[0], bit_depth=10)
    diff = np.abs(model_rgb(y, u, v, spec) - swscale_rgb(y, u, v, space, color_range, 10))[interior(*y.shape)] * 255
    assert diff.max() <= 1.5, diff.max()  # 10 bits rounded to 8 by swscale: measured up to 1.15


@pytest.mark.parametrize("bit_depth", [8, 10])
@pytest.mark.parametrize("space", [6, 1, 9], ids=["bt601", "bt709", "bt2020"])
@pytest.mark.parametrize("color_range", [1, 2], ids=["limited", "full"])
def test_yuv_the_encoder_gets_matches_swscale(space: int, color_range: int, bit_depth: int) -> None:
    """The way out: the model's RGB as the planes the encoder is handed, against swscale's rgb24 ->
    yuv420p with the stream's matrix and range (flat patches: chroma siting plays no part)."""
    h, w = 48, 64
    rgb = np.kron(np.random.default_rng(space).integers(0, 256, (h // BLOCK, w // BLOCK, 3)),
                  np.ones((BLOCK, BLOCK, 1), int)).astype(np.uint8)
    spec = ColorSpec.from_tags(space, color_range, 1, 1, h, bit_depth=bit_depth)
    planes = rgb_to_yuv420(torch.from_numpy(rgb).permute(2, 0, 1)[None].double() / 255, spec)
    y, u, v = (p[0].numpy().astype(float) for p in planes)
    ref = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format=spec.pix_fmt, dst_colorspace=SWS_SPACE[space], dst_color_range=SWS_RANGE[color_range],
        interpolation=SWS_EXACT).to_ndarray().astype(float)
    ry, ru, rv = ref[:h], ref[h:h + h // 4].reshape(h // 2, w // 2), ref[h + h // 4:].reshape(h // 2, w // 2)
    cy, cx = np.mgrid[0:h // 2, 0:w // 2] % (BLOCK // 2)
    inside = (cy >= 1) & (cy <= 2) & (cx >= 1) & (cx <= 2)  # chroma samples whose filters stay in a patch
    assert np.abs(y - ry)[interior(h, w)].max() <= 1  # code values of the stream's depth
    assert np.abs(u - ru)[inside].max() <= 1 and np.abs(v - rv)[inside].max() <= 1


@pytest.mark.parametrize("bit_depth", [8, 10])
def test_overshooting_model_output_is_clamped_not_wrapped(bit_depth: int) -> None:
    """A model's output may leave [0, 1]: such pixels become the extreme code values, never wrap around."""
    spec = ColorSpec.from_tags(1, 2, 1, 1, 16, bit_depth=bit_depth)
    rgb = torch.full((1, 3, 16, 16), 1.25)
    rgb[..., 8:, :] = -0.25
    y, u, v = rgb_to_yuv420(rgb, spec)
    top = (1 << bit_depth) - 1
    assert all(p.dtype == (torch.uint8 if bit_depth == 8 else torch.int16) for p in (y, u, v))  # as the writer packs them
    assert (y[0, :8] == top).all() and (y[0, 8:] == 0).all()
    assert ((u - (top + 1) // 2).abs() <= 1).all() and ((v - (top + 1) // 2).abs() <= 1).all()  # grey stays grey


@pytest.mark.parametrize("space, color_range", [(1, 1), (9, 2), (6, 2)], ids=["bt709-limited", "bt2020-full",
                                                                             "bt601-full"])
def test_pipeline_feeds_the_model_the_streams_colour(tmp_path: Path, tiny_weights: Path, space: int,
                                                      color_range: int) -> None:
    """A lossless H.264 clip tagged with a matrix and range: the frames the model is handed are what
    swscale makes of the decoded planes with those tags (the tags are read, not guessed from the size)."""
    y, u, v = patch_planes(color_range == 2, h=48, w=64, seed=space)
    clip = tmp_path / "tagged.mkv"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=24, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        ctx = stream.codec_context
        ctx.colorspace, ctx.color_range, ctx.color_primaries, ctx.color_trc = space, color_range, space, space
        for i in range(2):
            frame = av.VideoFrame.from_ndarray(np.concatenate([y.ravel(), u.ravel(), v.ravel()]).reshape(72, 64),
                                               format="yuv420p")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    seen: list[torch.Tensor] = []
    up = Upscaler(tiny_weights, device="cpu")
    real = up.upscale_tensor

    def spy(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        seen.append(x.clone())
        return real(x, *args, **kwargs)

    up.upscale_tensor = spy
    upscale_video(clip, tmp_path / "out.mkv", up)
    with av.open(str(clip)) as c:
        decoded = [f.to_ndarray() for f in c.decode(video=0)]
    assert len(decoded) == 2 and np.array_equal(decoded[0], np.concatenate([y.ravel(), u.ravel(), v.ravel()])
                                                .reshape(72, 64))  # lossless: the referee sees these planes
    reference = swscale_rgb(y, u, v, space, color_range)
    got = torch.cat(seen)[0].permute(1, 2, 0).double().numpy()
    assert np.abs(got - reference)[interior(48, 64)].max() * 255 <= 1.0


# ---------------------------------------------------------------------------------------------
# (d) chroma placement: MPEG-2/H.264 4:2:0 ("left" siting), on a single-pixel impulse


def tent(d: float) -> float:
    """Linear interpolation's weight at distance d (in chroma sample spacings)."""
    return max(0.0, 1.0 - abs(d))


def expected_upsampled(h: int, w: int, j: int, i: int) -> np.ndarray:
    """Response at full resolution (2h x 2w) to a unit chroma sample at (row j, column i): chroma
    column i sits on luma column 2i, chroma row j halfway between luma rows 2j and 2j+1, and each
    luma pixel linearly interpolates between the chroma samples around it."""
    ys, xs = np.arange(2 * h), np.arange(2 * w)
    return np.outer([tent((yy - (2 * j + 0.5)) / 2) for yy in ys], [tent((xx - 2 * i) / 2) for xx in xs])


@pytest.mark.parametrize("plane", ["u", "v"])
@pytest.mark.parametrize("j, i", [(3, 4), (2, 5)])
def test_chroma_upsampling_of_an_impulse_is_left_sited_linear(plane: str, j: int, i: int) -> None:
    h, w, amp = 8, 10, 64
    spec = ColorSpec.from_tags(1, 2, 1, 1, 2 * h)  # BT.709 full range: chroma span 255, no clipping here
    y = torch.full((1, 2 * h, 2 * w), 128, dtype=torch.uint8)
    u, v = torch.full((1, h, w), 128, dtype=torch.uint8), torch.full((1, h, w), 128, dtype=torch.uint8)
    (u if plane == "u" else v)[0, j, i] += amp
    rgb = yuv_to_rgb(y, u, v, spec)[0].double().numpy()
    kr, kb = 0.2126, 0.0722
    # B - Y = 2(1 - Kb) Cb and R - Y = 2(1 - Kr) Cr: the blue (u) or red (v) channel carries the response
    channel, gain = (2, 2 * (1 - kb)) if plane == "u" else (0, 2 * (1 - kr))
    response = (rgb[channel] - 128 / 255) / (gain * amp / 255)
    np.testing.assert_allclose(response, expected_upsampled(h, w, j, i), atol=1e-4)


def expected_downsampled(h: int, w: int, yy: int, xx: int) -> np.ndarray:
    """Weights each chroma sample (h/2 x w/2) gives a unit impulse at luma pixel (yy, xx): the filter
    an encoder applies for left-sited 4:2:0: [1 2 1]/4 centred on luma column 2i, and the mean of the
    two luma rows 2j, 2j+1 that chroma row j sits between."""
    rows = [0.5 if yy in (2 * j, 2 * j + 1) else 0.0 for j in range(h // 2)]
    cols = [{0: 0.5, 1: 0.25, -1: 0.25}.get(xx - 2 * i, 0.0) for i in range(w // 2)]
    return np.outer(rows, cols)


@pytest.mark.parametrize("yy, xx", [(5, 7), (6, 8), (9, 3)], ids=["odd-column", "even-column", "odd-row"])
def test_chroma_downsampling_of_an_impulse_is_left_sited_121(yy: int, xx: int) -> None:
    h, w = 16, 20
    spec = ColorSpec.from_tags(1, 2, 1, 1, h)
    rgb = torch.full((1, 3, h, w), 0.5, dtype=torch.float64)
    rgb[0, 2, yy, xx] = 1.0  # a blue impulse: Cb = (B - Y) / (2 (1 - Kb)) = 0.5 (1 - Kb) / (2 (1 - Kb))
    _, u, _ = rgb_to_yuv420(rgb, spec)
    cb = 0.25 * 255  # the impulse's Cb in full-range code values
    expected = 128 + cb * expected_downsampled(h, w, yy, xx)
    assert np.abs(u[0].numpy().astype(float) - expected).max() <= 0.5 + 1e-6  # rounded to code values


# ---------------------------------------------------------------------------------------------
# (e, f) training: the learning-rate schedule, and the GAN stage's generator step



@pytest.fixture()
def tiny_trainer(monkeypatch: pytest.MonkeyPatch, tiny_weights: Path):
    """A Trainer over one random 64x64 photo, the tiny generator and a small discriminator (seconds)."""
    for module in ("skimage", "sklearn", "matplotlib"):  # train.data's imports, as in tests/test_train.py
        pytest.importorskip(module)
    import train.train as train_mod

    photo = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    monkeypatch.setattr(train_mod, "load_split", lambda part, **kw: {"p": photo} if part == "train" else {})
    monkeypatch.setattr(train_mod, "Discriminator",
                        lambda: Discriminator(DiscriminatorConfig(base_channels=8, num_blocks=4, dense=16)))

    def make(**overrides) -> "train_mod.Trainer":
        cfg = train_mod.TrainConfig(**{**dict(name="t", model="srgan-x4-lite", init_from=str(tiny_weights),
                                              steps=4, batch=1, hr_patch=16, lr=1e-3, lr_final=1e-5,
                                              wheel_photos=False), **overrides})
        return train_mod.Trainer(cfg, torch.device("cpu"), None)
    return make


def test_lr_schedule_is_a_cosine_from_lr_down_to_lr_final(tiny_trainer) -> None:
    trainer = tiny_trainer(steps=4)
    lrs = []
    for step in (0, 1, 2, 4):  # first, a quarter, the middle, the last
        trainer.step = step
        trainer.train_step()
        lrs.append(trainer.opt_g.param_groups[0]["lr"])
    lr, final = 1e-3, 1e-5
    assert lrs[0] == pytest.approx(lr)
    assert lrs[1] == pytest.approx(final + (lr - final) * (1 + math.cos(math.pi / 4)) / 2)
    assert lrs[2] == pytest.approx((lr + final) / 2)
    assert lrs[3] == pytest.approx(final)


def test_one_gan_step_moves_both_networks(tiny_trainer) -> None:
    trainer = tiny_trainer(stage="gan", kind="gan")
    g_before = {k: p.detach().clone() for k, p in trainer.generator.named_parameters()}
    d_before = {k: p.detach().clone() for k, p in trainer.discriminator.named_parameters()}
    losses = trainer.train_step()
    assert all(math.isfinite(v) for v in losses.values())
    # Adam's first step moves every weight with a gradient by about lr
    g_moved = max((p.detach() - g_before[k]).abs().max().item() for k, p in trainer.generator.named_parameters())
    d_moved = max((p.detach() - trainer_d).abs().max().item()
                  for (k, p), trainer_d in zip(trainer.discriminator.named_parameters(), d_before.values()))
    assert g_moved == pytest.approx(1e-3, rel=0.1) and d_moved == pytest.approx(1e-3, rel=0.1)
    changed = [k for k, p in trainer.generator.named_parameters() if not torch.equal(p.detach(), g_before[k])]
    assert len(changed) >= len(g_before) // 2, changed
