"""Reading still images faithfully: any bit depth and mode -> float32 RGB in 0..1.

Pillow's ``convert("RGB")`` clips high-bit-depth images: a 16-bit grayscale PNG (mode ``I;16``)
comes out pure white and a float TIFF (mode ``F``) black. Here each mode is scaled by its own
range instead: 16-bit by 65535, 32-bit integer by 65535 when the values fit 16 bits (how Pillow
opens 16-bit PNGs) else by 2^31 - 1, float as is (clipped to 0..1). 8-bit modes (L, P, RGB, CMYK,
...) go through Pillow's own conversion. Alpha is dropped (the stored colour is kept), as
ComfyUI's Load Image does; EXIF rotation is applied; of a multi-frame file the first frame is read.

Every failure (missing, truncated, undecodable, larger than Pillow's decompression-bomb limit) is
an :class:`~wan_core.errors.InputError` naming the file and what to do.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import InputError, NonFiniteError, WanError
from .validation import API_NAMES, Names, check_input_file

log = logging.getLogger(__name__)

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
STILL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[..., None], 3, axis=-1)


def image_to_array(image: Any, where: str) -> np.ndarray:
    """A decoded Pillow image -> float32 [H, W, 3] in 0..1 (see the module docstring for the scaling)."""
    mode = image.mode
    if mode in SIXTEEN_BIT_MODES:
        return _gray_to_rgb(np.asarray(image).astype(np.float32) / 65535.0)
    if mode == "I":
        values = np.asarray(image).astype(np.int64)
        scale = 65535.0 if values.max(initial=0) <= 65535 else float(2**31 - 1)
        return _gray_to_rgb((np.clip(values, 0, None) / scale).astype(np.float32))
    if mode == "F":
        values = np.asarray(image).astype(np.float32)
        if not np.isfinite(values).all():
            raise NonFiniteError(f"{where} holds NaN/Inf pixels; re-export the image with finite values.")
        if values.min(initial=0.0) < 0.0 or values.max(initial=0.0) > 1.0:
            log.warning("%s: float pixels %g..%g clipped to 0..1.", where, values.min(), values.max())
        return _gray_to_rgb(np.clip(values, 0.0, 1.0))
    return np.asarray(image.convert("RGB"), dtype=np.uint8).astype(np.float32) / 255.0


def _decode(path: Path, where: str) -> np.ndarray:
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # above the limit: refuse, not warn
        with Image.open(path) as image:
            image.load()  # decoding happens here: truncated data fails now, inside our handler
            return image_to_array(ImageOps.exif_transpose(image), where)


def load_image(path: str | os.PathLike, name: str = "image", names: Names = API_NAMES) -> torch.Tensor:
    """Load an image file -> float32 [1, H, W, 3] in 0..1; ``name`` is the setting it came from (for errors)."""
    from PIL import Image, UnidentifiedImageError

    path = check_input_file(path, name, names)
    where = f"{names(name)} {str(path)!r}"
    try:
        array = _decode(path, where)
    except WanError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InputError(
            f"{where} is larger than the {Image.MAX_IMAGE_PIXELS} pixel safety limit ({exc}); a video frame "
            "needs far fewer: downscale the image."
        ) from None
    except UnidentifiedImageError:
        raise InputError(f"{where} is not an image format Pillow can read: convert it to PNG or JPEG.") from None
    except MemoryError:
        raise InputError(f"{where} does not fit in memory when decoded: downscale the image.") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, ... for damaged files
        raise InputError(
            f"{where} could not be decoded ({type(exc).__name__}: {exc}); the file is truncated or damaged: "
            "re-export or re-download it."
        ) from None
    return torch.from_numpy(np.ascontiguousarray(array))[None]
