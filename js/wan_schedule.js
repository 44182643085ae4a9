// Pure helpers for the Wan Core editor extension (no ComfyUI imports, so node can test them).

/** Snap a frame count to the nearest valid 4n+1 value (>= 1). */
export function snapFrames(value) {
  const n = Math.max(0, Math.round((Number(value) - 1) / 4));
  return 4 * n + 1;
}

/** Snap a size in pixels to the nearest positive multiple of `multiple`. */
export function snapSize(value, multiple) {
  const m = Math.max(1, multiple | 0);
  return Math.max(m, Math.round(Number(value) / m) * m);
}

/** The unshifted grid's first sigma: UniPC starts at float32(1 - 1/1000), as wan_core (and the official scheduler). */
export const UNIPC_SIGMA_MAX = Math.fround(1 - 1 / 1000);

/**
 * Shifted flow sigmas of one run, as wan_core.sampling.build_schedule: s*x / (1 + (s-1)*x) on
 * linspace(start, 0, total+1)[:total] (start 0.999 for "unipc", else 1), then a final 0; with denoise < 1
 * the last steps+1 values of a longer (total = int(steps/denoise)) schedule. Returns steps+1 values.
 */
export function sigmaSchedule(steps, shift, solver = "", denoise = 1) {
  const n = Math.max(1, steps | 0);
  const s = Number(shift) > 0 ? Number(shift) : 1.0;
  const d = Number(denoise);
  const total = d > 0 && d < 1 ? Math.max(n, Math.trunc(n / d)) : n;
  const start = solver === "unipc" ? UNIPC_SIGMA_MAX : 1.0;
  const delta = (0 - start) / total; // numpy.linspace: i * step + start
  const full = [];
  for (let i = 0; i < total; i++) {
    const x = i * delta + start;
    full.push((s * x) / (1 + (s - 1) * x));
  }
  full.push(0);
  return full.slice(full.length - (n + 1));
}

/**
 * Index of the first step run by the low-noise expert, or -1: wan_core's step_plan feeds the DiT
 * timesteps t = trunc(1000*sigma) and keeps the high-noise expert while t >= 1000*boundary.
 */
export function expertSwitchStep(sigmas, boundary) {
  if (!(boundary > 0)) return -1;
  const limit = Number(boundary) * 1000;
  for (let i = 0; i < sigmas.length - 1; i++) {
    if (Math.trunc(sigmas[i] * 1000) < limit) return i;
  }
  return -1;
}

/**
 * A custom sigma list as the Wan Custom Sigmas node's widget holds it ("1.0, 0.9375; 0.8333 0.625, 0", optional
 * [ ]), as wan_core.sampling.schedules.parse_sigmas reads it; null when it is not a list of >= 2 numbers.
 */
export function parseSigmaList(text) {
  const parts = String(text ?? "").trim().replace(/^\[+|\]+$/g, "").split(/[\s,;]+/).filter((p) => p.length);
  const values = parts.map(Number);
  if (values.length < 2 || values.some((v) => !Number.isFinite(v))) return null;
  return values;
}

/** Colours of the sampler's per-step marks: R ran the DiT, P partly, C reused a cache, Z zero-init (no call). */
export const MARK_COLORS = { R: "#44bb66", P: "#ddaa33", C: "#5b7080", Z: "#aa4444" };
