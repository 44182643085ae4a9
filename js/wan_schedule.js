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

/** Shifted flow sigmas: s*x / (1 + (s-1)*x) on linspace(1, 0, steps+1). Returns steps+1 values. */
export function sigmaSchedule(steps, shift) {
  const n = Math.max(1, steps | 0);
  const s = Number(shift) > 0 ? Number(shift) : 1.0;
  const out = [];
  for (let i = 0; i <= n; i++) {
    const x = 1 - i / n;
    out.push((s * x) / (1 + (s - 1) * x));
  }
  return out;
}

/** Index of the first step run by the low-noise expert (t = 1000*sigma < boundary*1000), or -1. */
export function expertSwitchStep(sigmas, boundary) {
  if (!(boundary > 0)) return -1;
  for (let i = 0; i < sigmas.length - 1; i++) {
    if (sigmas[i] < boundary) return i;
  }
  return -1;
}
