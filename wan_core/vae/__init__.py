"""wan_core.vae: the Wan2.1 (z16, 4x8x8) and Wan2.2 (z48, 4x16x16) causal video VAEs.

vae = wan_core.load_vae(path_or_state_dict, device=None, dtype=None)
z = vae.encode(video)      # [B, 3, 4n+1, H, W] in [-1, 1] -> normalised latent float32
x = vae.decode(z)          # normalised latent -> [B, 3, 4n+1, H, W] in [-1, 1] float32
"""

from .config import VAEConfig
from .model import WanVAE
from .tiling import TileOptions

__all__ = ["TileOptions", "VAEConfig", "WanVAE", "load_vae"]


def load_vae(*args, **kwargs) -> WanVAE:
    """See :func:`wan_core.vae.loader.load_vae`."""
    from .loader import load_vae as _load

    return _load(*args, **kwargs)
