"""The Wan DiT: one implementation for every supported variant (WAN_SPEC sections 1-2).

Variants differ only by optional parts, attached by :class:`DiTConfig`: ``img_emb``
+ ``k_img/v_img`` (Wan2.1 I2V/FLF2V/Fun), ``vace_*`` (VACE), ``ref_conv`` (Fun V1.1
reference image), ``control_adapter`` (Fun camera) and per-token timesteps (Wan2.2 TI2V-5B).

Precision policy: ``compute_dtype`` (bf16 on GPUs, fp32 on CPU by default) for
matmuls, convolutions and attention; fp32 for the timestep embedding, modulation,
LayerNorm statistics, the residual stream and the head (spec 2.8). Weights may be
stored in another dtype (bf16 weights with fp32 compute, fp8 with a scale) and are
converted per call by :class:`~wan_core.ops.WanLinear`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

import torch
from torch import nn

from ..errors import ConditioningError, InputError
from ..ops import WanLinear
from .attention import check_backend, eight_bit_attention
from .blocks import Context, SelfAttention, WanBlock
from .blockswap import BlockSwap
from .camera import CameraAdapter
from .config import DiTConfig
from .embeddings import (
    Head,
    ImageEmbedding,
    TextEmbedding,
    TokenTable,
    embed_timesteps,
    time_embedding_mlp,
    time_projection_mlp,
)
from .rope import RopeCache
from .token_split import TokenSplit
from .vace import VaceBlock, VaceState, start_vace


class WanDiT(nn.Module):
    """Wan2.1 / Wan2.2 diffusion transformer predicting the flow-matching velocity."""

    # forward() takes a ``block_cache`` (wan_core.sampling.cache.base.BlockHook) that may skip the blocks
    supports_block_cache = True

    def __init__(self, config: DiTConfig, device: torch.device | str | None = None) -> None:
        super().__init__()
        c = self.config = config
        self.compute_dtype = torch.float32
        self.attention_backend = "sdpa"
        self.fast_8bit = False
        self._eight_bit_device: torch.device | None = None
        self.patch_embedding = nn.Conv3d(c.in_dim, c.dim, c.patch_size, stride=c.patch_size, device=device)
        self.text_embedding = TextEmbedding(c.text_dim, c.dim, c.text_len, device=device)
        self.time_embedding = time_embedding_mlp(c.freq_dim, c.dim, device=device)
        self.time_projection = time_projection_mlp(c.dim, device=device)
        if c.clip_dim is not None:
            pos = c.clip_tokens if c.task == "flf2v" else None
            self.img_emb = ImageEmbedding(c.clip_dim, c.dim, pos, device=device)
        self.blocks = nn.ModuleList(
            WanBlock(c.dim, c.ffn_dim, c.num_heads, c.eps, c.has_image_embedding, device=device)
            for _ in range(c.num_layers)
        )
        self.head = Head(c.dim, c.out_dim * c.patch_volume, c.eps, device=device)
        if c.has_vace:
            assert c.vace_in_dim is not None  # detected together with vace_layers
            self.vace_patch_embedding = nn.Conv3d(
                c.vace_in_dim, c.dim, c.patch_size, stride=c.patch_size, device=device
            )
            self.vace_blocks = nn.ModuleList(
                VaceBlock(c.dim, c.ffn_dim, c.num_heads, c.eps, first=j == 0, device=device)
                for j in range(len(c.vace_layers))
            )
        if c.has_ref_conv:
            assert c.ref_conv_in_dim is not None  # detected together with has_ref_conv
            self.ref_conv = nn.Conv2d(
                c.ref_conv_in_dim, c.dim, c.patch_size[1:], stride=c.patch_size[1:], device=device
            )
        if c.camera_channels is not None:  # (DiTConfig.has_camera)
            self.control_adapter = CameraAdapter(
                c.camera_channels, c.dim, c.camera_downscale, c.patch_size[1:], c.camera_blocks, device=device
            )
        self.rope = RopeCache(c.head_dim)
        self.block_swap: BlockSwap | None = None
        self.sequence_parallel: TokenSplit | None = None

    @property
    def dtype(self) -> torch.dtype:
        """The compute dtype (activations, matmuls); weights may be stored differently."""
        return self.compute_dtype

    @property
    def device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        """Compute in ``dtype``; the convolutions (which run in the compute dtype) are cast to it."""
        if dtype not in (torch.float32, torch.bfloat16, torch.float16):
            raise InputError(f"Compute dtype {dtype} is not supported; use float32, bfloat16 or float16.")
        self.compute_dtype = dtype
        for name in ("patch_embedding", "vace_patch_embedding", "ref_conv", "control_adapter"):
            conv = getattr(self, name, None)
            if conv is not None:
                conv.to(dtype=dtype)

    def set_attention(self, backend: str) -> None:
        """Select the attention kernel for every block (see :mod:`wan_core.dit.attention`)."""
        self.attention_backend = check_backend(backend)
        self._apply_attention()

    @property
    def effective_attention(self) -> str:
        """The backend the blocks run: the chosen one, or on the 8-bit path what ``auto`` becomes there."""
        if self.fast_8bit and self._eight_bit_device is not None:
            return eight_bit_attention(self.attention_backend, self._eight_bit_device)
        return self.attention_backend

    def _apply_attention(self) -> None:
        backend = self.effective_attention
        for module in self.modules():
            if hasattr(module, "backend"):
                setattr(module, "backend", backend)  # noqa: B010 (nn.Module.__setattr__ is typed for tensors)

    def set_sequence_parallel(self, split: TokenSplit | None) -> None:
        """Split the tokens of every forward across ranks (``wan_core.parallel``); None = one process."""
        self.sequence_parallel = split
        for module in self.modules():
            if isinstance(module, SelfAttention):
                module.sequence_parallel = split

    def _all_blocks(self) -> list[WanBlock]:
        """The main blocks, then the VACE blocks (each a WanBlock)."""
        found = [*self.blocks, *getattr(self, "vace_blocks", [])]
        return [block for block in found if isinstance(block, WanBlock)]

    def set_fast_8bit(self, enabled: bool, run_on: torch.device | str | None = None) -> None:
        """Opt-in 8-bit compute: INT8/FP8 attention and FP8 GEMMs in every block (approximate; CUDA sm90+).

        The block Linears get an :class:`~wan_core.kernels.fp8_linear.Fp8Linear` (FP8 copy of
        the weight, per-channel scales; fp8 checkpoints are used as stored) and the norms hand them
        FP8 rows with per-token scales. The cross-attention's context projections (k, v of the
        512 text / 257 image tokens) stay exact: every video token reads the same context keys and
        values, so their rounding error does not average out (at 14B 720p: 4.5e-2 instead of 5.1e-2
        output error on random weights), and 8-bit saves nothing on so few tokens. Attention
        ``auto`` becomes ``fp8`` (flash-attn 3's FP8 kernel) where that runs (Hopper with
        flash-attn 3 installed): 1.3x its bf16 kernel at 14B 720p on an H200, adding ~4e-3 error
        per call inside the DiT. Other backends are kept as
        chosen (our INT8 kernel, ``attention="int8"``, at best tied cuDNN's bf16 kernel there).
        Raises BackendUnavailableError naming the missing piece.
        ``run_on``: the device the model will run on (default: where it is now); the FP8 weight
        copies are made there on the first call, and dropped whenever the model moves.
        """
        from ..kernels import fp8_linear

        target = None
        if enabled:
            if self.block_swap is not None:
                raise InputError("The 8-bit path cannot be combined with block swap yet; set block_swap to 0.")
            target = torch.device(run_on) if run_on is not None else self.device
            fp8_linear.check_device(target)
        for block in self._all_blocks():
            block.fp8_inputs = enabled
            context = {id(layer) for layer in block.cross_attn.context_projections()}
            for layer in block.modules():
                if isinstance(layer, WanLinear):
                    eight_bit = enabled and id(layer) not in context
                    layer.kernel = fp8_linear.Fp8Linear(self.compute_dtype) if eight_bit else None
        self.fast_8bit = enabled
        self._eight_bit_device = target
        self._apply_attention()

    def compile_blocks(self, **compile_kwargs) -> None:
        """Optional: ``torch.compile`` each block (fuses the fp32 norm/modulation/RoPE element-wise ops).

        Eager mode is the default and needs no compiler; this is an opt-in speed-up on CUDA.
        """
        for block in self._all_blocks():
            block.compile(**compile_kwargs)

    def set_block_swap(self, n_blocks: int, offload_device: torch.device | str = "cpu", prefetch: bool = True) -> None:
        """Keep the first ``n_blocks`` main blocks on ``offload_device``, moving each in just before use.

        ``n_blocks=0`` turns swapping off (the blocks return to the model's device). On CUDA
        the next swapped block is copied in on a side stream while the current one runs.
        Changing the count never holds more blocks on the device than before or after: the
        old swapped blocks stay on their offload device until the new plan is in place.
        """
        home = self.device
        if self.block_swap is not None:
            self.block_swap.remove(self.block_swap.offload_device)
            self.block_swap = None
        if n_blocks > 0 and self.fast_8bit:
            raise InputError("Block swap cannot be combined with the 8-bit path yet; turn fast_8bit off.")
        if n_blocks > 0:
            self.block_swap = BlockSwap(self.blocks, n_blocks, torch.device(offload_device), prefetch=prefetch)
        self.to(home)  # blocks no longer swapped return to the model's device

    def _apply(self, fn, recurse: bool = True):
        """``.to()``/``.cuda()`` etc. leave swapped blocks on their offload device."""
        for layer in self.modules():  # the 8-bit path's FP8 weight copies follow on the next call
            if isinstance(layer, WanLinear) and layer.kernel is not None:
                layer.kernel.reset()
        swap = getattr(self, "block_swap", None)  # _apply also runs inside nn.Module.__init__, before it is set
        if swap is None:
            return super()._apply(fn, recurse)
        with swap.hidden():
            return super()._apply(fn, recurse)

    # ----------------------------------------------------------------------------------
    # forward
    # ----------------------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor | float,
        context: torch.Tensor | list[torch.Tensor],
        clip_fea: torch.Tensor | None = None,
        y: torch.Tensor | None = None,
        vace_context: torch.Tensor | list[torch.Tensor] | None = None,
        vace_scale: float | list[float] = 1.0,
        ref_latent: torch.Tensor | None = None,
        camera: torch.Tensor | None = None,
        frame_positions: Sequence[int] | None = None,
        block_cache: Any = None,
    ) -> torch.Tensor:
        """Velocity [B, out_dim, T, h, w] fp32 for the normalised latent x [B, C, T, h, w].

        t: [B] / scalar / per-token [B, T*h/2*w/2] (or per-frame [B, T]) in 0..1000.
        context: [B, L<=512, text_dim] or B tensors [L_i, text_dim]. clip_fea: [B, N, clip_dim].
        y: [B, in_dim - C, T, h, w] appended after x. vace_context: [B, vace_in_dim, T, h, w]
        or a list (vace_scale one float or one per context). ref_latent: [B, C_ref, h, w] for
        ``ref_conv`` models (prepended as one extra frame). camera: [B, 24, T, H, W] Plücker rays
        at pixel size for Fun-camera models. frame_positions: the temporal RoPE position of each of
        the T latent frames (context windows); default 0..T-1. Batch-1 conditioning broadcasts.
        block_cache: a step-cache hook (MagCache / TeaCache) that runs the blocks or reuses a residual.
        """
        if self.block_swap is not None:
            self.block_swap.discard_prefetch()
        with torch.no_grad():
            x, grid = self._patchify_input(x, y, camera)
            batch, tokens = x.shape[0], x.shape[1]
            ref_tokens = 0
            if ref_latent is not None:
                x, ref_tokens = self._prepend_reference(x, ref_latent)
            e, e0 = self._embed_time(self._timesteps(t, batch, grid, ref_tokens))
            ctx = self._embed_context(context, clip_fea, batch)
            rope = self._rope(grid, ref_tokens, frame_positions, x.device)
            vace = self._start_vace(x, vace_context, vace_scale, ref_tokens)
            out = self._blocks_and_head(x, e, e0, ctx, rope, vace, ref_tokens, block_cache)
            return self._unpatchify(out, grid, batch, tokens)

    def _blocks_and_head(self, x, e, e0, ctx: Context, rope, vace, ref_tokens: int, block_cache: Any) -> torch.Tensor:
        """Blocks + head -> [B, S, out]: one rank's share of the tokens under sequence parallelism, and
        through a step cache's hook when one is given (it may reuse a residual instead of running them)."""
        split = self.sequence_parallel
        if split is not None:  # from here on each rank holds only its share of the tokens
            if block_cache is not None:
                raise InputError(
                    "Block-skipping step caches (MagCache, TeaCache) cannot run on several GPUs: each rank "
                    "would decide on its own share of the tokens. Use EasyCache there, or one GPU."
                )
            x, e, e0, rope, vace = split.scatter_inputs(x, e, e0, rope, vace)
        if block_cache is None:
            x = self._run_blocks(x, e0, ctx, rope, vace)
        else:  # a partial (not a closure, whose cells an exception's traceback would keep alive)
            blocks = functools.partial(self._run_blocks, e0=e0, ctx=ctx, rope=rope, vace=vace)
            x = block_cache.run_blocks(x, e, e0, blocks)
        if split is None:
            return self.head(x[:, ref_tokens:], e if e.shape[1] == 1 else e[:, ref_tokens:])
        return split.gather(self.head(x, e))[:, ref_tokens:]

    def _patchify_input(
        self, x: torch.Tensor, y: torch.Tensor | None, camera: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """[B, C, T, h, w] (+ y, + camera tokens) -> tokens [B, S, D] fp32 and the grid (f, h/2, w/2)."""
        if x.ndim != 5:
            raise InputError(f"x must be a 5-D latent [B, C, T, h, w]; got shape {tuple(x.shape)}.")
        if y is not None:
            y = y.expand(x.shape[0], *y.shape[1:]) if y.shape[0] == 1 else y
            x = torch.cat([x, y.to(device=x.device, dtype=x.dtype)], dim=1)
        c = self.config
        if x.shape[1] != c.in_dim:
            raise ConditioningError(
                f"{c.variant} takes {c.in_dim} input channels (latent {c.out_dim} + y {c.extra_channels}); got "
                f"{x.shape[1]}. Use the conditioning node that matches this model (i2v/fun need y)."
            )
        pt, ph, pw = c.patch_size
        if x.shape[2] % pt or x.shape[3] % ph or x.shape[4] % pw:
            raise InputError(f"Latent size {tuple(x.shape[2:])} is not divisible by the patch size {c.patch_size}.")
        tokens = self.patch_embedding(x.to(device=self.device, dtype=self.compute_dtype))  # inputs may be elsewhere
        if camera is not None:
            tokens = tokens + self._camera_tokens(camera, tokens)
        grid = tuple(tokens.shape[2:])
        # [B, D, f, gh, gw] -> [B, S, D]; contiguous, or every later op inherits the transposed strides
        tokens = tokens.flatten(2).transpose(1, 2).to(torch.float32, memory_format=torch.contiguous_format)
        return tokens, grid  # type: ignore[return-value]

    def _camera_tokens(self, camera: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """The camera adapter's output [1|B, D, f, gh, gw] for patch-embedded ``tokens`` [B, D, f, gh, gw]."""
        if not self.config.has_camera:
            raise ConditioningError(
                f"{self.config.variant} has no camera adapter (control_adapter); load a Fun-Camera model or remove "
                "the camera conditioning."
            )
        out = self.control_adapter(camera.to(device=self.device, dtype=self.compute_dtype))
        if out.shape[2:] != tokens.shape[2:] or out.shape[0] not in (1, tokens.shape[0]):
            raise ConditioningError(
                f"The camera conditioning gives a token grid {tuple(out.shape[2:])} (batch {out.shape[0]}) but the "
                f"latent's is {tuple(tokens.shape[2:])} (batch {tokens.shape[0]}): build it with the video's frames, "
                "width and height."
            )
        return out

    def _rope(self, grid: tuple[int, int, int], ref_tokens: int, positions: Sequence[int] | None, device):
        """RoPE factors for the frames (a reference frame, when prepended, takes position 0)."""
        frames = grid[0] + (1 if ref_tokens else 0)
        if positions is not None and ref_tokens:
            positions = [0, *(int(p) + 1 for p in positions)]
        return self.rope.get((frames, grid[1], grid[2]), device, frame_positions=positions)

    def _prepend_reference(self, x: torch.Tensor, ref_latent: torch.Tensor) -> tuple[torch.Tensor, int]:
        if not self.config.has_ref_conv:
            raise ConditioningError(f"{self.config.variant} has no ref_conv; it cannot take a reference latent.")
        ref = ref_latent if ref_latent.ndim == 4 else ref_latent[:, :, 0]
        r = self.ref_conv(ref.to(self.compute_dtype)).flatten(2).transpose(1, 2)
        r = r.to(torch.float32, memory_format=torch.contiguous_format)
        r = r.expand(x.shape[0], -1, -1) if r.shape[0] == 1 else r
        return torch.cat([r, x], dim=1), r.shape[1]

    def _timesteps(self, t, batch: int, grid: tuple[int, int, int], ref_tokens: int) -> torch.Tensor:
        """[B] -> [B] ; [B, T] (per frame) or [B, S] (per token) -> [B, S(+ref)]."""
        t = torch.as_tensor(t, device=self.device)
        if t.ndim == 0 or (t.ndim == 1 and t.shape[0] == 1):
            return t.reshape(1).expand(batch)
        if t.ndim == 1:
            return t
        f, gh, gw = grid
        if t.shape[1] == f and f != f * gh * gw:
            t = t.repeat_interleave(gh * gw, dim=1)
        if t.shape[1] != f * gh * gw:
            raise InputError(
                f"Per-token timesteps have shape {tuple(t.shape)}; expected [B, {f * gh * gw}] or [B, {f}]."
            )
        if ref_tokens:
            t = torch.cat([t[:, :1].expand(-1, ref_tokens), t], dim=1)
        return t.expand(batch, -1) if t.shape[0] == 1 else t

    def _embed_time(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | TokenTable]:
        return embed_timesteps(t, self.config.freq_dim, self.time_embedding, self.time_projection)

    def _embed_context(self, context, clip_fea: torch.Tensor | None, batch: int) -> Context:
        text = self.text_embedding.embed(context, batch, self.compute_dtype, self.device)
        image = None
        if self.config.has_image_embedding:
            if clip_fea is None and self.config.task not in ("fun-control", "fun-camera"):
                raise ConditioningError(
                    f"{self.config.variant} needs CLIP vision features (clip_fea); connect a CLIP vision encode."
                )
            if clip_fea is not None:  # Fun-Control / Fun-Camera may run without CLIP: the image branch is skipped
                image = self.img_emb(clip_fea.to(self.device), batch).to(self.compute_dtype)
        return Context(text, image)

    def _start_vace(self, x, vace_context, vace_scale, ref_tokens: int) -> VaceState | None:
        if vace_context is None:
            return None
        if not self.config.has_vace:
            raise ConditioningError(f"{self.config.variant} is not a VACE model; remove the VACE conditioning.")
        if ref_tokens:
            raise ConditioningError("A reference latent (ref_conv) cannot be combined with VACE.")
        first = cast(VaceBlock, self.vace_blocks[0])
        return start_vace(self.vace_patch_embedding, first, vace_context, vace_scale, x, self.dtype)

    def _run_blocks(self, x, e0, ctx: Context, rope, vace: VaceState | None) -> torch.Tensor:
        cdt = self.compute_dtype
        hint_at = {layer: j for j, layer in enumerate(self.config.vace_layers)}
        for i, block in enumerate(self.blocks):
            x = block(x, e0, ctx, rope, cdt)
            if vace is not None and i in hint_at:
                x = x + vace.step(cast(VaceBlock, self.vace_blocks[hint_at[i]]), e0, ctx, rope, cdt)
        return x

    def _unpatchify(self, out: torch.Tensor, grid: tuple[int, int, int], batch: int, tokens: int) -> torch.Tensor:
        """[B, S, pt*ph*pw*C] (c fastest) -> [B, C, f*pt, gh*ph, gw*pw] fp32."""
        f, gh, gw = grid
        pt, ph, pw = self.config.patch_size
        out = out[:, :tokens].reshape(batch, f, gh, gw, pt, ph, pw, -1)
        out = out.permute(0, 7, 1, 4, 2, 5, 3, 6)
        return out.reshape(batch, -1, f * pt, gh * ph, gw * pw).float()
