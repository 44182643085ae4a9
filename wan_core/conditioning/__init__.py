"""Conditioning builders (I2V, FLF2V, TI2V, VACE, Fun) and control preprocessing."""

from .types import Conditioning, FrameLock, VaceHint

__all__ = ["Conditioning", "FrameLock", "VaceHint"]
