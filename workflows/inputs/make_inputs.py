"""Writes the small example inputs the shipped workflows reference (run from the repo root):

    python workflows/inputs/make_inputs.py

start.png / end.png: 832x480 flat-colour scenes (a sun rising over hills), a few KB each;
control.mp4: 33 frames 416x240 at 16 fps of a moving shape, for the canny / Fun-Control graphs.
Flat colours keep the files tiny; they are placeholders to be replaced by your own images.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))


def scene(width: int, height: int, sun_y: float) -> Image.Image:
    image = Image.new("RGB", (width, height), (110, 160, 220))
    draw = ImageDraw.Draw(image)
    r = height // 8
    cx, cy = int(width * 0.7), int(height * sun_y)
    draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=(250, 210, 80))
    draw.polygon([(0, height), (0, int(height * 0.7)), (int(width * 0.35), int(height * 0.55)),
                  (int(width * 0.7), int(height * 0.75)), (width, int(height * 0.6)), (width, height)],
                 fill=(70, 130, 70))
    return image


def control_frames(count: int, width: int, height: int):
    import numpy as np
    import torch

    frames = []
    for i in range(count):
        image = Image.new("RGB", (width, height), (0, 0, 0))
        draw = ImageDraw.Draw(image)
        x = int(width * (0.15 + 0.7 * i / max(count - 1, 1)))
        draw.rectangle((x - 30, height // 2 - 40, x + 30, height // 2 + 40), fill=(255, 255, 255))
        draw.ellipse((width // 2 - 25, 20, width // 2 + 25, 70), outline=(255, 255, 255), width=4)
        frames.append(np.asarray(image, dtype=np.float32) / 255.0)
    return torch.from_numpy(np.stack(frames))


def main() -> None:
    from wan_core.video_io import write_video

    scene(832, 480, 0.45).save(HERE / "start.png", optimize=True)
    scene(832, 480, 0.2).save(HERE / "end.png", optimize=True)
    write_video(control_frames(33, 416, 240), HERE / "control.mp4", fps=16.0, crf=28)


if __name__ == "__main__":
    main()
