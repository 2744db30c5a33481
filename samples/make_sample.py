"""Make samples/sample.mp4, the clip the README upscales: a 4x-downscaled pan across
samples/photo.png (scikit-image's `coffee`, CC0, held out from training) with a sine-tone AAC
track, so the upscaled output shows both the model's gain and the kept audio.

    python samples/make_sample.py
"""
from pathlib import Path

import cv2

from rtsr.video.synth import low_res, pan_frames, write_clip

HERE = Path(__file__).resolve().parent


def main() -> None:
    photo = cv2.cvtColor(cv2.imread(str(HERE / "photo.png")), cv2.COLOR_BGR2RGB)
    frames = low_res(pan_frames(photo, (480, 320), 48), 4)  # 120x80 LR frames, 2 s at 24 fps
    write_clip(HERE / "sample.mp4", frames, fps=24, audio=True, crf=16)
    print(f"wrote {HERE / 'sample.mp4'}")


if __name__ == "__main__":
    main()
