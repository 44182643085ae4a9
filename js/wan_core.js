// Wan Core editor extension: frame/size snapping, detected-variant badges, sigma schedule plot.
import { app } from "../../scripts/app.js";
import { expertSwitchStep, sigmaSchedule, snapFrames, snapSize } from "./wan_schedule.js";

const PREFIX = "WanCore";
const PLOT_HEIGHT = 90;

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

function drawBadge(node, ctx) {
  if (!node.wanBadge) return;
  ctx.save();
  ctx.font = "11px sans-serif";
  const text = String(node.wanBadge);
  const width = ctx.measureText(text).width + 12;
  const x = Math.max(4, node.size[0] - width - 6);
  const y = -(globalThis.LiteGraph?.NODE_TITLE_HEIGHT ?? 30) - 18;
  ctx.fillStyle = "#2a6f4e";
  ctx.beginPath();
  if (ctx.roundRect) ctx.roundRect(x, y, width, 16, 6);
  else ctx.rect(x, y, width, 16);
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

function drawSchedule(node, ctx) {
  const steps = widgetValue(node, "steps", 30);
  const shift = widgetValue(node, "shift", 5);
  const boundary = widgetValue(node, "moe_boundary", 0);
  const solver = String(findWidget(node, "solver")?.value ?? "");
  const sigmas = sigmaSchedule(steps, shift, solver, widgetValue(node, "denoise", 1));
  const x0 = 10, w = node.size[0] - 20, h = PLOT_HEIGHT - 24;
  const y0 = node.size[1] - PLOT_HEIGHT + 8;
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
  ctx.fillStyle = "#aaa";
  ctx.font = "10px sans-serif";
  const label = sw >= 0 ? `sigma (shift ${shift}); low-noise expert from step ${sw}` : `sigma (shift ${shift})`;
  ctx.fillText(label, x0 + 2, y0 + h + 12);
  ctx.restore();
}

app.registerExtension({
  name: "WanCore.editor",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const comfyClass = nodeData?.name || "";
    if (!comfyClass.startsWith(PREFIX)) return;
    const isSampler = comfyClass === "WanCoreSampler";

    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const r = onNodeCreated?.apply(this, arguments);
      try {
        installSnapping(this, comfyClass);
        if (isSampler) this.setSize([this.size[0], this.size[1] + PLOT_HEIGHT]);
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
      return r;
    };

    const onDrawForeground = nodeType.prototype.onDrawForeground;
    nodeType.prototype.onDrawForeground = function (ctx) {
      const r = onDrawForeground?.apply(this, arguments);
      if (this.flags?.collapsed) return r;
      try {
        drawBadge(this, ctx);
        if (isSampler) drawSchedule(this, ctx);
      } catch (e) {
        console.warn("WanCore: drawing failed", e);
      }
      return r;
    };
  },
});
