"""The real ComfyUI editor (the frontend ComfyUI serves) in headless Chromium, with our pack and tiny models.

Optional: runs when ``COMFYUI_PATH`` / ``COMFYUI_PYTHON`` are set (as for tests/test_comfyui_real.py), a
Chromium is found (``$CHROMIUM`` or chromium / chromium-browser / google-chrome on PATH) and Node.js can
``require("playwright-core")`` (``npm install --prefix DIR playwright-core`` outside the repo, then
``NODE_PATH=DIR/node_modules``). tests/editor_check.cjs drives the page and only collects facts; this file
judges them:

* every workflows/*.json goes through the app's ``loadGraphData``: every node type is registered, no node
  has errors, the node count is kept;
* no console error / warning or page error comes from our js/ files (nor a "WanCore:" message);
* a user edit of a frame count 82 becomes 81 (4n+1), width 833 -> 832, height 470 -> 464 (480 on the
  TI2V-5B latent, multiple of 32), through our wrapped widget callback;
* the sampler draws the shifted sigma curve below its widgets, and on A14B graphs an expert-switch mark
  whose step equals wan_core's own schedule (``steps_at_or_above``), also for other widget settings;
* an ``executed`` message with ``ui.text`` sets and draws the loader badge; the tiny T2V workflow, shrunk
  through its widgets and queued from the page, runs and the loader shows the badge the server reported;
* a sampler fed by a Wan Custom Sigmas node plots that list; an ``executed`` message with the sampler's
  ``ui.wan_dit_steps`` draws one mark per step under the plot, in the step's colour; after the queued run the
  sampler shows the marks the server reported (every step ran the DiT).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from conftest import ROOT
from test_comfyui_real import LINK_NAME, comfyui_files, comfyui_previews  # noqa: F401  (ComfyUI fixtures)
from workflow_tools import API_DIR, WORKFLOWS, load_json

pytestmark = [pytest.mark.comfyui, pytest.mark.slow]

SCRIPT = ROOT / "tests" / "editor_check.cjs"
NODE_TIMEOUT_S = 240
OUR_JS = f"/extensions/{LINK_NAME}/"
SNAP_PROBES = {"length": 82, "width": 833, "height": 470}
SCHEDULE_PROBES = [
    {"steps": 20, "shift": 3.0, "moe_boundary": 0.5, "solver": "unipc"},
    {"steps": 20, "shift": 3.0, "moe_boundary": 0.5, "solver": "dpm++"},
    {"steps": 30, "shift": 8.0, "moe_boundary": 0.9, "solver": "euler"},
    {"steps": 50, "shift": 5.0, "moe_boundary": 0.875, "solver": "unipc"},
    {"steps": 20, "shift": 5.0, "moe_boundary": 0.9, "solver": "unipc", "denoise": 0.6},
    {"steps": 12, "shift": 1.0, "moe_boundary": 0.3, "solver": "euler", "denoise": 0.35},
]
LONG_BADGE = "wan2.2-t2v-a14b (high + low noise experts), probe"  # does not fit beside the editor's badge
MARK_PROBE = "RPCZRRCCR"  # one mark per step: ran the DiT, partly, cached, zero-init
MARK_COLORS = {"R": "#44bb66", "P": "#ddaa33", "C": "#5b7080", "Z": "#aa4444"}  # js/wan_schedule.js
RUN = {"name": "wan21_t2v_1.3b", "widgets": {"width": 32, "height": 32, "length": 5, "steps": 2}}
INSTALL_HELP = (
    "install Debian's chromium (apt-get install chromium) and playwright-core outside the repo "
    "(npm install --prefix /some/dir playwright-core; export NODE_PATH=/some/dir/node_modules)"
)


def _skip(reason: str) -> None:
    print(f"SKIP editor browser test: {reason}")
    pytest.skip(reason)


def _tools() -> tuple[str, str]:
    """(node, chromium) or skip, saying what is missing and how to get it."""
    for var in ("COMFYUI_PATH", "COMFYUI_PYTHON"):
        if not os.environ.get(var):
            _skip(f"{var} is not set (see tests/test_comfyui_real.py); {INSTALL_HELP}")
    node = shutil.which("node")
    if node is None:
        _skip(f"node (Node.js) is not installed; {INSTALL_HELP}")
    chromium = os.environ.get("CHROMIUM") or next(
        (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None
    )
    if not chromium:
        _skip(f"no Chromium found (set CHROMIUM or put chromium on PATH); {INSTALL_HELP}")
    found = subprocess.run([node, "-e", "require.resolve('playwright-core')"], capture_output=True, timeout=60)
    if found.returncode != 0:
        _skip(f"node cannot require playwright-core (NODE_PATH={os.environ.get('NODE_PATH')}); {INSTALL_HELP}")
    return node, chromium


@pytest.fixture(scope="module")
def editor(request, tmp_path_factory):
    node, chromium = _tools()  # before starting ComfyUI: skip fast when the browser side is missing
    # a server with live previews (--preview-method latent2rgb): the sampler's preview must not cover its plot
    comfyui = request.getfixturevalue("comfyui_previews")
    work = tmp_path_factory.mktemp("editor_browser")
    workflows = {p.stem: load_json(p) for p in sorted(WORKFLOWS.glob("*.json"))}
    plan = {
        "base": comfyui["base"],
        "chromium": chromium,
        "profile": str(work / "profile"),
        "workflows": workflows,
        "screenshot": str(work / "editor.png"),
        "probes": {"snap": SNAP_PROBES, "badge": LONG_BADGE, "schedules": SCHEDULE_PROBES, "marks": MARK_PROBE},
        "run": {**RUN, "graph": workflows[RUN["name"]], "timeoutMs": 150_000},
    }
    (work / "plan.json").write_text(json.dumps(plan))
    proc = subprocess.run(
        [node, str(SCRIPT), str(work / "plan.json"), str(work / "result.json")],
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT_S,
    )
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    shot = os.environ.get("EDITOR_SCREENSHOT")  # keep the screenshot taken after the queued run
    if shot:
        shutil.copy(plan["screenshot"], shot)
    return json.loads((work / "result.json").read_text())


def _ours(message: dict) -> bool:
    return OUR_JS in message.get("url", "") or OUR_JS in message.get("text", "") or "WanCore" in message.get("text", "")


def test_no_errors_from_our_extension(editor):
    ours = [m for m in editor["console"] if _ours(m)] + [e for e in editor["pageErrors"] if _ours(e)]
    assert not ours, json.dumps(ours, indent=1)


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_workflow_loads_without_missing_nodes(editor, name):
    report, graph = editor["workflows"][name], load_json(WORKFLOWS / f"{name}.json")
    assert report["missing"] == [], f"the editor would report missing nodes: {report['missing']}"
    assert report["nodeCount"] == len(graph["nodes"])
    assert [n["type"] for n in report["nodes"]] == [n["type"] for n in graph["nodes"]]
    bad = [(n["id"], n["type"]) for n in report["nodes"] if n["hasErrors"] or not n["type"]]
    assert not bad, bad
    saved = {int(k): v or [] for k, v in report["widgetsValues"].items()}
    assert saved == {n["id"]: n.get("widgets_values") or [] for n in graph["nodes"]}, (
        "the editor would save other values"
    )
    queued = {
        nid: {"class_type": n["class_type"], "inputs": n["inputs"], "_meta": n.get("_meta")}
        for nid, n in report["prompt"].items()
    }
    twin = {
        nid: {"class_type": n["class_type"], "inputs": n["inputs"], "_meta": n["_meta"]}
        for nid, n in load_json(API_DIR / f"{name}.json").items()
    }
    assert queued == twin, "the editor's graphToPrompt (titles included) differs from workflows/api"


def _expected_snap(node_type: str, widget: str, value: int) -> int:
    if widget == "length":
        return 4 * round((value - 1) / 4) + 1
    multiple = 32 if node_type == "WanCoreTI2VLatent" else 16
    return max(multiple, round(value / multiple) * multiple)


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_frames_and_sizes_snap(editor, name):
    probed = [n for n in editor["workflows"][name]["nodes"] if n["snaps"]]
    assert probed, "no node of ours with a length / width / height widget"
    for node in probed:
        for widget, result in node["snaps"].items():
            want = _expected_snap(node["type"], widget, result["set"])
            assert result["got"] == want, (node["type"], widget, result, want)
            assert result["wrapped"] and result["restored"], (node["type"], widget, result)
    sizes = {n["type"]: n["snaps"] for n in probed if "height" in n["snaps"]}
    if "WanCoreTI2VLatent" in sizes:
        assert sizes["WanCoreTI2VLatent"]["height"]["got"] == 480


def _schedule(settings: dict):
    """wan_core's own schedule for the sampler widgets: (sigmas [steps+1] float64, low-noise start step or -1)."""
    from wan_core.sampling import SamplerSettings
    from wan_core.sampling.schedules import build_schedule, parse_sigmas, steps_at_or_above

    custom = settings.get("sigmas_text")  # a linked Wan Custom Sigmas node replaces steps / shift / denoise
    schedule = build_schedule(
        SamplerSettings(
            steps=int(settings["steps"]),
            shift=float(settings["shift"]),
            solver=settings["solver"],
            denoise=float(settings.get("denoise", 1.0)),
            sigmas=parse_sigmas(custom) if custom else None,
        )
    )
    boundary = float(settings["moe_boundary"])
    switch = steps_at_or_above(schedule, boundary * 1000) if boundary > 0 else -1
    if switch >= schedule.steps:
        switch = -1  # never reaches the low-noise expert
    return schedule.sigmas.double().tolist(), switch


def _label_step(texts: list[str]) -> int:
    (label,) = [t for t in texts if t.startswith("sigma (")]
    return int(label.rsplit(" ", 1)[1]) if "low-noise expert from step" in label else -1


def _check_plot(draw: dict, settings: dict) -> None:
    """The drawn curve is wan_core's sigma schedule (read back from the plot box) and the switch mark its step."""
    sigmas, want = _schedule(settings)
    (box,) = [f["rect"] for f in draw["fills"] if f["style"] == "#1b1b1b"]
    x0, y0, w, h = box
    (curve,) = [s["points"] for s in draw["strokes"] if s["style"] == "#66ccff"]
    drawn = [1 - (y - y0) / h for _x, y in curve]
    assert len(drawn) == len(sigmas) and max(abs(a - b) for a, b in zip(drawn, sigmas)) < 1e-5, (drawn, sigmas)
    assert curve[0][0] == x0 and abs(curve[-1][0] - (x0 + w)) < 1e-9
    assert y0 >= draw["widgetsBottom"], "the plot overlaps the widgets"
    assert y0 + h <= draw["size"][1], "the plot leaves the node"
    assert _label_step([t["text"] for t in draw["texts"]]) == want, (draw["texts"], want, settings)
    marks = [s["points"] for s in draw["strokes"] if s["style"] == "#ff9900"]
    assert len(marks) == (1 if want >= 0 else 0), marks
    if want >= 0:
        assert all(abs(px - curve[want][0]) < 1e-9 for px, _y in marks[0]), (marks, curve[want])


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_sampler_draws_schedule_and_expert_switch(editor, name):
    samplers = [n for n in editor["workflows"][name]["nodes"] if n["type"] == "WanCoreSampler"]
    assert samplers
    for node in samplers:
        _check_plot(node["draw"], node["widgets"])
        assert len(node["probed"]) == len(SCHEDULE_PROBES)
        for probe in node["probed"]:  # other widget settings, as a user would set them
            _check_plot(probe["draw"], {**node["widgets"], **probe["settings"]})


def _check_marks(draw: dict, marks: str) -> None:
    """One mark per step under the plot box, left to right, in the step's colour, inside the node."""
    (box,) = [f["rect"] for f in draw["fills"] if f["style"] == "#1b1b1b"]
    x0, y0, w, h = box
    drawn = [f for f in draw["fills"] if f["style"] in MARK_COLORS.values()]
    assert [f["style"] for f in drawn] == [MARK_COLORS[m] for m in marks], drawn
    for i, f in enumerate(drawn):
        x, y, mw, mh = f["rect"]
        assert abs(x - (x0 + w * i / len(marks))) < 1e-6 and 0 < mw <= w / len(marks), (i, f, box)
        assert y0 + h <= y and y + mh <= draw["size"][1], (f, box, draw["size"])


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_sampler_draws_the_step_marks(editor, name):
    for node in [n for n in editor["workflows"][name]["nodes"] if n["type"] == "WanCoreSampler"]:
        assert node["marks"]["stored"] == MARK_PROBE
        _check_marks(node["marks"]["draw"], MARK_PROBE)
        assert not [f for f in node["draw"]["fills"] if f["style"] in MARK_COLORS.values()]  # none before a run


def test_custom_sigmas_are_plotted(editor):
    linked = [
        n
        for report in editor["workflows"].values()
        for n in report["nodes"]
        if n["type"] == "WanCoreSampler" and n["widgets"].get("sigmas_text")
    ]
    assert len(linked) >= 2, "the distilled workflows feed their samplers a custom sigma list"
    for node in linked:  # _check_plot compares the drawn curve with wan_core's schedule of that list
        _check_plot(node["draw"], node["widgets"])
        assert any(t["text"].startswith("sigma (custom list, 4 steps)") for t in node["draw"]["texts"])


def test_new_sampler_node_has_room_for_the_plot(editor):
    _check_plot(editor["fresh"]["draw"], editor["fresh"]["widgets"])


@pytest.mark.parametrize("name", sorted(p.stem for p in WORKFLOWS.glob("*.json")))
def test_loader_badge_from_executed_message(editor, name):
    (loader,) = [n for n in editor["workflows"][name]["nodes"] if n["type"] == "WanCoreModelLoader"]
    badge = loader["badge"]
    assert badge["stored"] == badge["sent"], badge
    _check_badge(badge["draw"], badge["sent"])


def _text_box(t: dict) -> tuple[float, float, float, float]:
    return t["x"], t["y"] - t["h"], t["x"] + t["w"], t["y"]  # fillText's y is the baseline


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _check_badge(draw: dict, text: str) -> None:
    """Drawn once, above the title, over no other text (the editor's own node-source badge included)."""
    ours = [t for t in draw["texts"] if t["text"] == text]
    assert len(ours) == 1, [t["text"] for t in draw["texts"]]
    box = _text_box(ours[0])
    assert box[3] < 0, "the badge should sit above the title bar"
    clashes = [
        t["text"] for t in draw["texts"] if t is not ours[0] and t["text"].strip() and _overlap(box, _text_box(t))
    ]
    assert not clashes, f"badge {text!r} drawn over {clashes}"


def test_queued_tiny_workflow_shows_the_detected_variant(editor):
    run = editor["run"]
    assert run["done"] == "execution_success", run
    reported = run["history"][run["loaderId"]]["text"][0]
    assert reported.startswith("wan2") and run["badge"] == reported, run
    _check_badge(run["loaderDraw"], reported)
    sampler = run["samplerDraw"]  # after a run the sampler carries its live preview: not over the plot
    steps = run["history"][run["samplerId"]]["wan_dit_steps"][0]
    assert steps == "R" * RUN["widgets"]["steps"] and run["samplerMarks"] == steps, run["samplerMarks"]
    _check_marks(sampler, steps)
    (box,) = [f["rect"] for f in sampler["fills"] if f["style"] == "#1b1b1b"]
    plot = (box[0], box[1], box[0] + box[2], box[1] + box[3] + 24)  # + the marks and the label line
    assert run["samplerImgs"] and sampler["images"], "no live preview on the sampler after the run"
    print(f"badge {reported!r}; sampler plot box {plot}; preview images drawn at {sampler['images']}")
    covered = [im for im in sampler["images"] if _overlap(plot, (im[0], im[1], im[0] + im[2], im[1] + im[3]))]
    assert not covered, f"preview image {covered} drawn over the schedule plot {plot}"


def test_js_schedule_matches_wan_core_without_browser(tmp_path):
    """Needs only Node.js (runs in CI when node is there): js/wan_schedule.js's curve and expert switch equal
    wan_core's build_schedule / step_plan rule over a grid of widget settings, edge cases included."""
    node = shutil.which("node")
    if node is None:
        _skip("node (Node.js) is not installed: cannot run js/wan_schedule.js")
    grid = [
        {"steps": st, "shift": sh, "moe_boundary": b, "solver": so, "denoise": d}
        for st in (4, 20, 40)
        for sh in (1.0, 3.0, 12.0)
        for b in (0.0, 0.5, 0.875, 0.9)
        for so in ("unipc", "dpm++", "euler")
        for d in (1.0, 0.6)
    ]
    (tmp_path / "wan_schedule.mjs").write_text((ROOT / "js" / "wan_schedule.js").read_text())
    calls = ", ".join(
        f"(() => {{ const s = m.sigmaSchedule({g['steps']}, {g['shift']}, '{g['solver']}', {g['denoise']});"
        f" return [s, m.expertSwitchStep(s, {g['moe_boundary']})]; }})()"
        for g in grid
    )
    (tmp_path / "run.mjs").write_text(
        f"import * as m from './wan_schedule.mjs'; console.log(JSON.stringify([{calls}]));"
    )
    proc = subprocess.run([node, str(tmp_path / "run.mjs")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for g, (sigmas, switch) in zip(grid, json.loads(proc.stdout), strict=True):
        want_sigmas, want_switch = _schedule(g)
        assert max(abs(a - b) for a, b in zip(sigmas, want_sigmas, strict=True)) < 1e-6, g
        assert switch == want_switch, (g, switch, want_switch)


def test_js_sigma_list_parser_matches_wan_core(tmp_path):
    """Needs only Node.js: js/wan_schedule.js reads a Wan Custom Sigmas text as wan_core's parse_sigmas does."""
    from wan_core.errors import InputError
    from wan_core.sampling.schedules import parse_sigmas

    node = shutil.which("node")
    if node is None:
        _skip("node (Node.js) is not installed: cannot run js/wan_schedule.js")
    texts = ["1.0, 0.9375, 0.833333, 0.625, 0.0", "[1, 0.96; 0.888889 0.727273,0]", " 0.5 0 ", "1", "1, x, 0", ""]
    (tmp_path / "wan_schedule.mjs").write_text((ROOT / "js" / "wan_schedule.js").read_text())
    (tmp_path / "run.mjs").write_text(
        f"import * as m from './wan_schedule.mjs'; console.log(JSON.stringify({json.dumps(texts)}.map(m.parseSigmaList)));"
    )
    proc = subprocess.run([node, str(tmp_path / "run.mjs")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for text, got in zip(texts, json.loads(proc.stdout), strict=True):
        try:
            want = list(parse_sigmas(text))
        except InputError:
            want = None
        assert got == want, (text, got, want)
