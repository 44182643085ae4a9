// Wan Core editor extension: frame/size snapping, detected-variant badges, sigma schedule plot with the
// last run's per-step marks (which steps ran the DiT).
import { app } from "../../scripts/app.js";
import { MARK_COLORS, expertSwitchStep, parseSigmaList, sigmaSchedule, snapFrames, snapSize } from "./wan_schedule.js";

const PREFIX = "WanCore";
const PLOT_HEIGHT = 102;
const MARKS_KEY = "wan_dit_steps"; // the sampler's ui output (nodes/sampling.py DIT_STEPS_KEY)

function findWidget(node, name) {
  return (node.widgets || []).find((w) => w.name === name);
}

function wrapCallback(widget, fn) {
  const original = widget.callback;
  widget.callback = function (value, ...rest) {
    const snapped = fn(value);
    if (snapped !== value) widget.value = snapped;
    return original ? original.call(this, widget.value, ...rest) : undefined;
  };
}

function installSnapping(node, comfyClass) {
  const multiple = comfyClass === "WanCoreTI2VLatent" ? 32 : 16;
  const length = findWidget(node, "length");
  if (length) wrapCallback(length, snapFrames);
  for (const name of ["width", "height"]) {
    const w = findWidget(node, name);
    if (w) wrapCallback(w, (v) => snapSize(v, multiple));
  }
}

const BADGE_HEIGHT = 16;
const BADGE_GAP = 4;

/** Width of the editor's own badges (node source / id), right-aligned in one row above the title. */
function editorBadgesWidth(node, ctx) {
  let width = 0;
  for (const badge of Array.isArray(node.badges) ? node.badges : []) {
    try {
      const b = typeof badge === "function" ? badge() : badge;
      if (b?.getWidth) width += b.getWidth(ctx) + 2;
    } catch {
      // a badge we cannot measure: keep the row above for ours
      return Infinity;
    }
  }
  return width;
}

/** Our badge sits left of the editor's badges in their row, or in the row above when it does not fit. */
function drawBadge(node, ctx) {
  if (!node.wanBadge) return;
  const title = globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  ctx.save();
  const used = editorBadgesWidth(node, ctx);
  ctx.font = "11px sans-serif";
  const text = String(node.wanBadge);
  const width = ctx.measureText(text).width + 12;
  let x = node.size[0] - used - width - BADGE_GAP;
  let y = -title - 2 - BADGE_HEIGHT;
  if (used > 0 && x < 0) {
    x = Math.max(0, node.size[0] - width);
    y -= 20 + BADGE_GAP; // the editor's badges are 20 px high
  }
  ctx.fillStyle = "#2a6f4e";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, width, BADGE_HEIGHT, 6);
  else ctx.rect(x, y, width, BADGE_HEIGHT);
  ctx.fill();
  ctx.fillStyle = "#fff";
  ctx.fillText(text, x + 6, y + 12);
  ctx.restore();
}

function widgetValue(node, name, fallback) {
  const w = findWidget(node, name);
  const v = w ? Number(w.value) : NaN;
  return Number.isFinite(v) ? v : fallback;
}

/** The sigma list of a Wan Custom Sigmas node linked to the sampler's "sigmas" input, or null. */
function linkedSigmas(node) {
  const slot = (node.inputs || []).findIndex((i) => i.name === "sigmas");
  if (slot < 0 || node.inputs[slot].link == null) return null;
  const source = node.getInputNode?.(slot);
  return source ? parseSigmaList(findWidget(source, "sigmas")?.value) : null;
}

/** One mark per step of the last run, between the sigma points the step goes from and to. */
function drawMarks(node, ctx, x0, y, w) {
  const marks = String(node.wanDitSteps || "");
  for (let i = 0; i < marks.length; i++) {
    ctx.fillStyle = MARK_COLORS[marks[i]] || "#888";
    const left = x0 + (w * i) / marks.length;
    ctx.fillRect(left, y, Math.max(1, w / marks.length - 1), 6);
  }
}

/** The sigma plot in the box (x0, y0, w, h): the curve, the expert switch mark, the step marks and a label. */
function drawSchedule(node, ctx, x0, y0, w, h) {
  const steps = widgetValue(node, "steps", 30);
  const shift = widgetValue(node, "shift", 5);
  const boundary = widgetValue(node, "moe_boundary", 0);
  const solver = String(findWidget(node, "solver")?.value ?? "");
  const custom = linkedSigmas(node);
  const sigmas = custom || sigmaSchedule(steps, shift, solver, widgetValue(node, "denoise", 1));
  ctx.save();
  ctx.fillStyle = "#1b1b1b";
  ctx.fillRect(x0, y0, w, h);
  ctx.strokeStyle = "#6cf";
  ctx.beginPath();
  sigmas.forEach((s, i) => {
    const x = x0 + (w * i) / (sigmas.length - 1), y = y0 + h * (1 - s);
    if (i === 0) ctx.moveTo(x, y);
    else ctx.lineTo(x, y);
  });
  ctx.stroke();
  const sw = expertSwitchStep(sigmas, boundary);
  if (sw >= 0) {
    const x = x0 + (w * sw) / (sigmas.length - 1);
    ctx.strokeStyle = "#f90";
    ctx.beginPath();
    ctx.moveTo(x, y0);
    ctx.lineTo(x, y0 + h);
    ctx.stroke();
  }
  drawMarks(node, ctx, x0, y0 + h + 3, w);
  ctx.fillStyle = "#aaa";
  ctx.font = "10px sans-serif";
  const curve = custom ? `sigma (custom list, ${sigmas.length - 1} steps)` : `sigma (shift ${shift})`;
  const label = sw >= 0 ? `${curve}; low-noise expert from step ${sw}` : curve;
  ctx.fillText(label, x0 + 2, y0 + h + 22);
  ctx.restore();
}

/**
 * The plot as a canvas widget, so the editor lays it out below the sampler's widgets and puts live
 * previews after it (drawn in the node's free area, a preview covered the plot). Not serialised:
 * it is the last widget, so widgets_values and the API prompt are unchanged.
 */
function addScheduleWidget(node) {
  const widget = {
    name: "wan_sigma_plot",
    type: "wan_sigma_plot",
    value: null,
    serialize: false,
    options: { serialize: false },
    computeSize: (width) => [width, PLOT_HEIGHT],
    draw(ctx, drawnNode, width, y) {
      drawSchedule(drawnNode, ctx, 10, y + 4, width - 20, PLOT_HEIGHT - 36);
    },
  };
  const added = node.addCustomWidget(widget);
  node.setSize([node.size[0], Math.max(node.size[1], node.computeSize()[1])]);
  return added;
}

app.registerExtension({
  name: "wan-core.comfyui-wan-core.editor", // <publisher>.<pack>.<extension>: unique among all packs
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const comfyClass = nodeData?.name || "";
    if (!comfyClass.startsWith(PREFIX)) return;
    const isSampler = comfyClass === "WanCoreSampler";

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      try {
        installSnapping(this, comfyClass);
        if (isSampler) addScheduleWidget(this);
      } catch (e) {
        console.warn("WanCore: node setup failed", e);
      }
      return r;
    };

    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      const r = onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (Array.isArray(text) && text.length) {
        this.wanBadge = text[0];
        this.setDirtyCanvas(true, false);
      }
      const marks = message?.[MARKS_KEY];
      if (Array.isArray(marks)) {
        this.wanDitSteps = String(marks[0] ?? "");
        this.setDirtyCanvas(true, false);
      }
      return r;
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const r = onDrawForeground?.apply(this, arguments);
      if (this.flags?.collapsed) return r;
      try {
        drawBadge(this, ctx);
      } catch (e) {
        console.warn("WanCore: drawing failed", e);
      }
      return r;
    };
  },
});
