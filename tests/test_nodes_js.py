"""The editor extension: JS syntax (node --check) and the schedule maths against wan_core's."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import torch
from conftest import ROOT

JS = sorted((ROOT / "js").glob("*.js"))
NODE = shutil.which("node")


def _need_node():
    if NODE is None:
        pytest.skip("node (Node.js) is not installed: cannot check the editor extension's JavaScript")


@pytest.mark.parametrize("path", JS, ids=lambda p: p.name)
def test_js_syntax(path, tmp_path):
    _need_node()
    module = tmp_path / (path.stem + ".mjs")  # ES module syntax: check it as a module
    module.write_text(path.read_text())
    result = subprocess.run([NODE, "--check", str(module)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_extension_registers_with_comfyui_app():
    text = (ROOT / "js" / "wan_core.js").read_text()
    assert 'from "../../scripts/app.js"' in text and "app.registerExtension(" in text


def _run_schedule_js(tmp_path, expression: str):
    _need_node()
    (tmp_path / "wan_schedule.mjs").write_text((ROOT / "js" / "wan_schedule.js").read_text())
    script = f"import * as s from './wan_schedule.mjs'; console.log(JSON.stringify({expression}));"
    (tmp_path / "run.mjs").write_text(script)
    result = subprocess.run([NODE, str(tmp_path / "run.mjs")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("steps,shift", [(50, 5.0), (40, 12.0), (4, 1.0)])
def test_js_sigmas_equal_wan_core_shift(tmp_path, steps, shift):
    from wan_core.sampling import shift_sigmas

    js = torch.tensor(_run_schedule_js(tmp_path, f"s.sigmaSchedule({steps}, {shift})"), dtype=torch.float64)
    ref = shift_sigmas(torch.linspace(1, 0, steps + 1, dtype=torch.float64), shift)
    assert js.shape == (steps + 1,)
    assert torch.allclose(js, ref.to(torch.float64), atol=1e-6)


def test_js_snapping_and_expert_switch(tmp_path):
    out = _run_schedule_js(
        tmp_path,
        "[[0, 1, 2, 3, 7, 80, 83].map(s.snapFrames), "
        "[s.snapSize(470, 16), s.snapSize(5, 32), s.snapSize(1300, 32)], "
        "s.expertSwitchStep(s.sigmaSchedule(40, 12), 0.875), "
        "s.expertSwitchStep(s.sigmaSchedule(40, 12), 0)]",
    )
    frames, sizes, switch, none = out
    assert frames == [1, 1, 1, 5, 9, 81, 85]
    assert sizes == [464, 32, 1312]
    sig = [12 * x / (1 + 11 * x) for x in (1 - i / 40 for i in range(41))]
    assert switch == next(i for i, s in enumerate(sig) if s < 0.875)  # first low-noise step
    assert none == -1


def test_extension_names_are_namespaced_by_publisher_and_pack():
    """registerExtension names share one global namespace in the editor: ours start with <publisher>.<pack>."""
    import re

    text = (ROOT / "pyproject.toml").read_text()
    publisher = re.search(r'PublisherId\s*=\s*"([^"]+)"', text).group(1)
    pack = re.search(r'^name\s*=\s*"([^"]+)"', text, flags=re.M).group(1)
    names = [n for path in JS for n in re.findall(r'registerExtension\(\{\s*name:\s*"([^"]+)"', path.read_text())]
    assert names, "no registerExtension call found"
    for name in names:
        assert name.startswith(f"{publisher}.{pack}."), name
