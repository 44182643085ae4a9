"""The sampling loop: noise -> (guided DiT velocity -> solver step) x N -> latent.

One call handles every Wan variant: a single DiT or the two Wan2.2 A14B experts, CFG,
batches of seeds, video-to-video (denoise < 1), the TI2V first-frame lock with per-token
timesteps, VACE hints with step ranges, context windows (long videos), progress/preview callbacks
and interruption.
"""

from __future__ import annotations

import logging
import traceback

import torch

from ..conditioning.types import Conditioning
from ..devices import empty_cache, resolve_device
from ..errors import ConditioningError, InputError
from ..finite import LatentGuard
from ..memory import ModelHost
from ..progress import NO_HOOKS, RunHooks
from .cache import CacheRun
from .experts import OFFICIAL_BOUNDARIES, Experts, Residency
from .guidance import Guidance, StepInputs, TextEmbeddings, as_context_list, conditioning_extras
from .model import DiTLike
from .noise import seeded_noise
from .preview import PREVIEW_CHANNELS, latent_preview
from .schedules import Schedule, build_schedule
from .settings import SamplerSettings
from .solvers import make_solver
from .windows import ContextWindowing, freenoise

log = logging.getLogger(__name__)


def step_plan(model: DiTLike | Experts, schedule: Schedule, settings: SamplerSettings) -> list[tuple[DiTLike, float]]:
    """(DiT, guidance scale) for every step: the expert switch at the boundary (t >= boundary -> high).

    The scale of each step is ``settings.cfg_for(high_noise)``; a (low, high) cfg pair on one
    model is split at the task's official boundary, as A14B would.
    """
    if isinstance(model, Experts):
        highs = model.high_noise_steps(schedule.timesteps)
        return [(model.high if high else model.low, settings.cfg_for(high)) for high in highs]
    switch = OFFICIAL_BOUNDARIES.get(model.config.task, 0.0) * 1000.0
    return [(model, settings.cfg_for(float(t) >= switch)) for t in schedule.timesteps.tolist()]


def _unique(models: list[DiTLike]) -> list[DiTLike]:
    out: list[DiTLike] = []
    for m in models:
        if not any(m is o for o in out):
            out.append(m)
    return out


def _check_latent_channels(models: list[DiTLike], cond: Conditioning) -> None:
    for m in models:
        out_dim = m.config.out_dim
        if int(out_dim) != int(cond.latent_shape[0]):
            raise ConditioningError(
                f"The conditioning describes a {cond.latent_shape[0]}-channel latent but the model predicts "
                f"{out_dim} channels: build the latent with the VAE that belongs to this model "
                "(16 = Wan2.1 VAE, 48 = Wan2.2 VAE)."
            )


def initial_latent(
    cond: Conditioning, settings: SamplerSettings, schedule: Schedule, device: torch.device
) -> torch.Tensor:
    """x at σ_0 [B, C, T, h, w] fp32: pure noise, or (1 − σ_0)·init + σ_0·noise when an init latent is given."""
    noise = freenoise(
        seeded_noise(cond.latent_shape, settings.seed, settings.batch_size),
        settings.context_windows,
        cond,
        settings.seed,
    ).to(device)
    if cond.init_latent is None:
        if settings.denoise < 1.0 and settings.sigmas is None:
            raise InputError(
                f"denoise={settings.denoise} needs an init latent to start from (video-to-video): "
                "connect an encoded video, or set denoise to 1."
            )
        return noise
    init = cond.init_latent.to(device, torch.float32)
    init = init[None] if init.ndim == 4 else init
    if tuple(init.shape[1:]) != tuple(cond.latent_shape) or init.shape[0] not in (1, settings.batch_size):
        raise InputError(
            f"init latent has shape {tuple(init.shape)}; expected [1, {', '.join(map(str, cond.latent_shape))}]"
            " (the shape of the latent being sampled)."
        )
    sigma0 = float(schedule.sigmas[0])
    return (1.0 - sigma0) * init + sigma0 * noise


def _locked(cond: Conditioning, x: torch.Tensor) -> torch.Tensor:
    """Re-impose the TI2V frame lock (locked frames become exactly the lock latent), if any."""
    return x if cond.frame_lock is None else cond.frame_lock.apply(x)


def step_timesteps(
    schedule: Schedule, k: int, batch: int, token_mask: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """t for step k: [B] (int64 official / fp32 float), or per-token [B, S] fp32 = mask·t under a frame lock."""
    t = schedule.timesteps[k]
    if token_mask is None:
        return t.reshape(1).expand(batch).to(device)
    return (token_mask.to(device) * float(t)).reshape(1, -1).expand(batch, -1)


def sample(
    model: DiTLike | Experts,
    positive: TextEmbeddings,
    negative: TextEmbeddings | None,
    cond: Conditioning,
    settings: SamplerSettings,
    hooks: RunHooks | None = None,
    device: torch.device | str | None = None,
    host: ModelHost | None = None,
) -> torch.Tensor:
    """Sample a normalised latent [batch_size, C, T', h, w] fp32 on CPU (T' = T − trim_latent_frames).

    ``model``: a WanDiT, or :class:`Experts` for Wan2.2 A14B. ``positive`` / ``negative``: text
    embeddings as lists of [L_i, D] tensors (one shared prompt, or one per batch element);
    ``negative`` may be None only when every guidance scale is 1. The active DiT is moved to
    ``device`` (default: where the first one lives) if it lives elsewhere, or ``host`` (a memory
    manager, e.g. ComfyUI's) makes it ready when given. On an interrupt or an
    error the run's tensors are dropped (including the locals of the traceback's finished frames)
    and the device cache is emptied before the exception propagates, so the next run starts clean.
    """
    hooks = hooks or NO_HOOKS
    schedule = build_schedule(settings)
    plan = step_plan(model, schedule, settings)
    models = _unique([m for m, _ in plan] + ([model.high, model.low] if isinstance(model, Experts) else []))
    _check_latent_channels(models, cond)
    device = resolve_device(device if device is not None else plan[0][0].device)
    mode = model.offload if isinstance(model, Experts) else "never"
    caches = _cache_run(model, settings, schedule, cond)
    residency = host if host is not None else Residency(models, device, mode)
    run = _Run(cond, settings, schedule, plan, residency, hooks, device, caches)
    try:
        with torch.no_grad():
            return run.loop(positive, negative)
    except BaseException as exc:
        run.release()
        traceback.clear_frames(exc.__traceback__)
        empty_cache(device)
        raise


def _cache_run(model: DiTLike | Experts, settings: SamplerSettings, schedule: Schedule, cond: Conditioning) -> CacheRun:
    """The run's step-cache strategy (expert-aware: each A14B expert gets its own state)."""
    roles = None
    if isinstance(model, Experts):  # by timestep, so that even one DiT in both roles gets two caches
        roles = ["high" if high else "low" for high in model.high_noise_steps(schedule.timesteps)]
    sigmas = [float(s) for s in schedule.sigmas.tolist()]
    height, width = cond.latent_shape[-2:]
    return CacheRun(settings.cache, sigmas, settings.shift, roles, (int(height), int(width)))


class _Run:
    """State of one sampling call, kept on an object so an interrupt can drop it all at once."""

    def __init__(
        self,
        cond: Conditioning,
        settings: SamplerSettings,
        schedule: Schedule,
        plan: list[tuple[DiTLike, float]],
        residency: ModelHost,
        hooks: RunHooks,
        device: torch.device,
        caches: CacheRun,
    ) -> None:
        self.cond, self.settings, self.schedule, self.plan = cond, settings, schedule, plan
        self.residency, self.hooks, self.device = residency, hooks, device
        self.solver = make_solver(settings.solver, schedule.sigmas)
        self.caches = caches
        self.windows = None if settings.context_windows is None else ContextWindowing(settings.context_windows, cond)
        self.guard = LatentGuard.for_plan(plan)
        self.x: torch.Tensor | None = None

    def loop(self, positive: TextEmbeddings, negative: TextEmbeddings | None) -> torch.Tensor:
        cond, settings, n = self.cond.on(self.device), self.settings, self.schedule.steps
        batch = settings.batch_size
        pos = [c.to(self.device) for c in as_context_list(positive, batch, "positive")]
        neg = None if negative is None else [c.to(self.device) for c in as_context_list(negative, batch, "negative")]
        token_mask = None
        if cond.frame_lock is not None:
            _, frames, height, width = cond.latent_shape
            token_mask = cond.frame_lock.token_mask((frames, height, width), self.plan[0][0].config.patch_size)
        guidance = Guidance(settings.batch_cfg, settings.guidance)
        x = self.x = _locked(cond, initial_latent(cond, settings, self.schedule, self.device))
        current = None
        for k, (dit, cfg) in enumerate(self.plan):
            self.hooks.check()
            if dit is not current:
                if current is not None:
                    log.info("Step %d/%d: switching to the low-noise expert (cfg %.2f).", k + 1, n, cfg)
                self.residency.activate(dit)
                current = dit
            t = step_timesteps(self.schedule, k, batch, token_mask, self.device)
            extras = conditioning_extras(cond, k / n, batch, self.device)
            inputs = StepInputs(t, pos, neg, extras, step=k, steps=n, cache=self.caches.step(k, dit))
            v = self._velocity(guidance, dit, x, inputs, cfg, k)
            preview = self._preview(v) if self.hooks.want_preview else None
            x = self.x = _locked(cond, self.solver.step(x, v))
            self.guard.check(x, k + 1, cfg, dit)
            del v, extras, inputs
            self.hooks.step(k + 1, n, preview)
        self.hooks.report(self.caches.finish())
        return self._finish()

    def _velocity(
        self, guidance: Guidance, dit: DiTLike, x: torch.Tensor, inputs: StepInputs, cfg: float, k: int
    ) -> torch.Tensor:
        """The guided velocity of step k at latent ``x``: one DiT call, or blended context windows."""
        if self.windows is None:
            return guidance.velocity(dit, x, inputs, cfg)

        def predict(x: torch.Tensor, window_inputs: StepInputs) -> torch.Tensor:
            return guidance.velocity(dit, x, window_inputs, cfg)

        return self.windows.velocity(predict, x, inputs, k, self.hooks.check)

    def _preview(self, v: torch.Tensor) -> torch.Tensor | None:
        """RGB of the current x0 prediction (first video, middle frame); None for latents without factors."""
        channels = int(self.cond.latent_shape[0])
        if channels not in PREVIEW_CHANNELS:
            return None
        assert self.x is not None  # set by loop() before the first step
        x0 = self.solver.data_prediction(self.x[:1], v[:1])
        return latent_preview(x0, channels)

    def _finish(self) -> torch.Tensor:
        assert self.x is not None  # set by loop()
        out = self.x[:, :, int(self.cond.trim_latent_frames) :].float().cpu()
        self.release()
        return out

    def release(self) -> None:
        self.x = None
        self.solver.release()
        self.caches.release()
