// Drives the real ComfyUI editor in headless Chromium (playwright-core) for tests/test_editor_browser.py.
//
// node editor_check.cjs <plan.json> <result.json>
// plan: {base, chromium, workflows: {name: graph}, probes: {...}, run: {...}, screenshot}
// result: {console: [...], pageErrors: [...], workflows: {name: report}, run: report}
// Only collects facts; the Python test decides what is right. Needs playwright-core on NODE_PATH.
"use strict";

const fs = require("fs");
const { chromium } = require("playwright-core");

// --headless comes from playwright (headless: true)
const FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];

async function waitForApp(page) {
  await page.waitForFunction(() => {
    const app = window.comfyAPI?.app?.app;
    return !!(app && app.graph && app.canvas && window.LiteGraph?.registered_node_types?.WanCoreSampler);
  }, null, { timeout: 120000, polling: 250 });
  // extensions register after the node defs; wait until ours is in
  await page.waitForFunction(() => window.comfyAPI.app.app.extensions?.some((e) => e.name === "wan-core.comfyui-wan-core.editor"),
    null, { timeout: 60000, polling: 250 });
}

// ------------------------------------------------------------------ in-page helpers (serialised into the page)

function pageHelpers() {
  const app = window.comfyAPI.app.app;
  const LG = window.LiteGraph;
  const find = (node, name) => (node.widgets || []).find((w) => w.name === name);
  const setByUser = (node, widget, value) => {
    // what the number widget's prompt / arrows do: setValue -> callback(value, canvas, node, pos, e)
    widget.setValue(value, { e: { canvasX: 0, canvasY: 0 }, node, canvas: app.canvas });
    return widget.value;
  };
  const recordDraw = (node) => {
    // the editor draws the whole node (title, badges, widgets, previews, our hooks) into a scratch
    // canvas, node origin at (40, 100); record texts with their boxes, strokes, fills and images
    const canvas = document.createElement("canvas");
    canvas.width = Math.ceil(node.size[0]) + 80;
    canvas.height = Math.ceil(node.size[1]) + 160;
    const ctx = canvas.getContext("2d");
    ctx.translate(40, 100);
    const texts = [], strokes = [], fills = [], images = [];
    let path = [];
    const spy = (name, fn) => { const orig = ctx[name].bind(ctx); ctx[name] = (...a) => { fn(a); return orig(...a); }; };
    spy("fillText", ([t, x, y]) => texts.push({ text: String(t), x, y, w: ctx.measureText(String(t)).width,
      h: parseFloat(ctx.font) || 10 }));
    spy("beginPath", () => { path = []; });
    spy("moveTo", ([x, y]) => path.push([x, y]));
    spy("lineTo", ([x, y]) => path.push([x, y]));
    spy("stroke", () => strokes.push({ style: String(ctx.strokeStyle), points: path.slice() }));
    spy("fillRect", ([x, y, w, h]) => fills.push({ style: String(ctx.fillStyle), rect: [x, y, w, h] }));
    spy("drawImage", (a) => images.push(a.length >= 5 ? a.slice(a.length - 4) : [a[1], a[2], a[0].width, a[0].height]));
    app.canvas.drawNode(node, ctx);
    const plot = (node.widgets || []).find((w) => w.name === "wan_sigma_plot");
    // lowest edge of the node's other widgets, in node coordinates (y is set by the node's arrange)
    const bottoms = (node.widgets || []).filter((w) => w !== plot && !w.hidden && w.y != null && !w.name?.startsWith("$$"))
      .map((w) => w.y + (w.computedHeight || LG.NODE_WIDGET_HEIGHT));
    return { texts, strokes, fills, images, size: [...node.size], plotY: plot?.y ?? null,
      widgetsBottom: bottoms.length ? Math.max(...bottoms) : null, previewWidgets: (node.widgets || [])
        .filter((w) => w.name?.startsWith("$$")).map((w) => ({ name: w.name, y: w.y, h: w.computedHeight })) };
  };
  const linkedSigmasText = (node) => {
    // the widget text of a node linked to the sampler's "sigmas" input (Wan Custom Sigmas), or null
    const slot = (node.inputs || []).findIndex((i) => i.name === "sigmas");
    const source = slot >= 0 && node.inputs[slot].link != null ? node.getInputNode(slot) : null;
    return source ? String(find(source, "sigmas")?.value ?? "") : null;
  };
  return { app, LG, find, setByUser, recordDraw, linkedSigmasText };
}

async function checkWorkflow(page, name, graph, probes) {
  return page.evaluate(async ({ name, graph, probes, helpers }) => {
    const { app, LG, find, setByUser, recordDraw, linkedSigmasText } = eval(`(${helpers})`)();
    await app.loadGraphData(structuredClone(graph), true, true, name,
      { showMissingNodesDialog: false, showMissingModelsDialog: false });
    app.canvas.draw(true, true);
    const report = { nodes: [], missing: [], nodeCount: app.graph.nodes.length };
    // what the editor would save and queue, before any probe touches a widget
    report.widgetsValues = Object.fromEntries(app.graph.serialize().nodes.map((n) => [n.id, n.widgets_values ?? null]));
    report.prompt = (await app.graphToPrompt()).output;
    report.missing = [...new Set(graph.nodes.map((n) => n.type).filter((t) => !LG.registered_node_types[t]))];
    const native = LG.createNode("EmptyHunyuanLatentVideo");
    const nativeIntCallback = find(native, "length")?.callback;
    for (const node of app.graph.nodes) {
      const r = { id: node.id, type: node.type, hasErrors: !!node.has_errors, snaps: {} };
      if (node.type?.startsWith("WanCore")) {
        for (const [widgetName, value] of Object.entries(probes.snap)) {
          const w = find(node, widgetName);
          if (!w) continue;
          const before = w.value;
          r.snaps[widgetName] = { set: value, got: setByUser(node, w, value),
            wrapped: typeof w.callback === "function" && w.callback !== nativeIntCallback };
          setByUser(node, w, before);
          r.snaps[widgetName].restored = w.value === before;
        }
        if (node.type === "WanCoreSampler") {
          r.widgets = Object.fromEntries(["steps", "shift", "moe_boundary", "solver", "denoise"]
            .map((n) => [n, find(node, n)?.value]));
          r.widgets.sigmas_text = linkedSigmasText(node);
          r.draw = recordDraw(node);
          r.probed = [];
          for (const settings of probes.schedules || []) {  // the plot follows the widgets
            const before = Object.fromEntries(Object.keys(settings).map((n) => [n, find(node, n)?.value]));
            for (const [n, v] of Object.entries(settings)) setByUser(node, find(node, n), v);
            r.probed.push({ settings, draw: recordDraw(node) });
            for (const [n, v] of Object.entries(before)) setByUser(node, find(node, n), v);
          }
          // the per-step marks of a run, as the server sends them in the executed message
          app.api.dispatchCustomEvent("executed", { node: String(node.id), display_node: String(node.id),
            output: { wan_dit_steps: [probes.marks] }, prompt_id: "editor-check" });
          r.marks = { sent: probes.marks, stored: node.wanDitSteps ?? null, draw: recordDraw(node) };
        }
        if (node.type === "WanCoreModelLoader") {
          const text = `${probes.badge} ${node.id}`;
          app.api.dispatchCustomEvent("executed", { node: String(node.id), display_node: String(node.id),
            output: { text: [text] }, prompt_id: "editor-check" });
          r.badge = { sent: text, stored: node.wanBadge ?? null, draw: recordDraw(node) };
        }
      }
      report.nodes.push(r);
    }
    return report;
  }, { name, graph, probes, helpers: pageHelpers.toString() });
}

async function realRun(page, run) {
  // load the workflow, shrink it through the widgets as a user would, queue it, wait for the loader's badge
  return page.evaluate(async ({ run, helpers }) => {
    const { app, find, setByUser, recordDraw } = eval(`(${helpers})`)();
    await app.loadGraphData(structuredClone(run.graph), true, true, run.name,
      { showMissingNodesDialog: false, showMissingModelsDialog: false });
    for (const node of app.graph.nodes) {
      for (const [name, value] of Object.entries(run.widgets)) {
        const w = find(node, name);
        if (w) setByUser(node, w, value);
      }
    }
    const loader = app.graph.nodes.find((n) => n.type === "WanCoreModelLoader");
    const sampler = app.graph.nodes.find((n) => n.type === "WanCoreSampler");
    const outcome = { done: null };
    const onEnd = (kind) => ({ detail }) => { outcome.done = outcome.done || { kind, detail }; };
    app.api.addEventListener("execution_success", onEnd("execution_success"));
    app.api.addEventListener("execution_error", onEnd("execution_error"));
    // the editor's "unload models and execution cache": the loader runs (and reports its badge) again
    await app.api.fetchApi("/free", { method: "POST", body: JSON.stringify({ unload_models: true, free_memory: true }) });
    await app.queuePrompt(0, 1);
    const deadline = Date.now() + run.timeoutMs;
    while (!outcome.done && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
    const promptId = outcome.done?.detail?.prompt_id;
    const history = promptId ? await (await app.api.fetchApi(`/history/${promptId}`)).json() : {};
    return { done: outcome.done?.kind ?? "timeout", error: outcome.done?.detail?.exception_message ?? null,
      loaderId: loader ? String(loader.id) : null, history: history[promptId]?.outputs ?? null,
      samplerId: sampler ? String(sampler.id) : null, samplerMarks: sampler?.wanDitSteps ?? null,
      badge: loader?.wanBadge ?? null, loaderDraw: loader ? recordDraw(loader) : null,
      samplerDraw: sampler ? recordDraw(sampler) : null, samplerImgs: sampler?.imgs?.length ?? 0 };
  }, { run, helpers: pageHelpers.toString() });
}

async function main() {
  const [planPath, resultPath] = process.argv.slice(2);
  const plan = JSON.parse(fs.readFileSync(planPath, "utf8"));
  const result = { console: [], pageErrors: [], workflows: {}, run: null };
  const context = await chromium.launchPersistentContext(plan.profile, { executablePath: plan.chromium, args: FLAGS,
    headless: true, viewport: { width: 1600, height: 1000 } });
  try {
    const page = context.pages()[0] || await context.newPage();
    page.on("console", (m) => {
      if (["error", "warning"].includes(m.type())) {
        result.console.push({ type: m.type(), text: m.text(), url: m.location()?.url || "" });
      }
    });
    page.on("pageerror", (e) => result.pageErrors.push({ text: String(e?.stack || e) }));
    await page.goto(plan.base, { waitUntil: "domcontentloaded" });
    await waitForApp(page);
    for (const [name, graph] of Object.entries(plan.workflows)) {
      result.workflows[name] = await checkWorkflow(page, name, graph, plan.probes);
    }
    result.fresh = await page.evaluate(async ({ helpers }) => {
      // a sampler dropped from the node library: default size, default widgets
      const { app, LG, recordDraw } = eval(`(${helpers})`)();
      const node = LG.createNode("WanCoreSampler");
      app.graph.add(node);
      app.canvas.draw(true, true);
      const draw = recordDraw(node);
      const widgets = Object.fromEntries(["steps", "shift", "moe_boundary", "solver", "denoise"]
        .map((n) => [n, node.widgets.find((w) => w.name === n)?.value]));
      app.graph.remove(node);
      return { draw, widgets };
    }, { helpers: pageHelpers.toString() });
    if (plan.run) {
      result.run = await realRun(page, plan.run);
      await page.keyboard.press("Escape");  // the first-start template dialog
      await page.waitForTimeout(500);
      await page.screenshot({ path: plan.screenshot });
    }
  } finally {
    fs.writeFileSync(resultPath, JSON.stringify(result, null, 1));
    await context.close();
  }
}

main().catch((e) => {
  console.error(e?.stack || String(e));
  process.exit(1);
});
