"""Repository-level checks: README commands, CI script, ComfyUI entry import."""

import importlib.util
import re
import sys
from pathlib import Path

from conftest import ROOT


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_has_exactly_two_commands():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "python -m wan_core selftest" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command():
    test_cmd = _readme_commands()[1]
    pytest_part = test_cmd.split("&&", 1)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert pytest_part in ci, f"{pytest_part!r} not in .ci/run"
    assert "pip install --quiet torch==2.13.0" in ci


def test_requirements_never_pin_torch():
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        assert not re.match(r"^\s*torch\b", line), line


def test_comfyui_entry_imports_outside_comfyui():
    spec = importlib.util.spec_from_file_location(
        "wan_core_pack_under_test", ROOT / "__init__.py", submodule_search_locations=[str(ROOT)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    path_before = list(sys.path)
    try:
        spec.loader.exec_module(module)
        assert sys.path == path_before, "the pack's __init__.py must not edit sys.path"
        assert Path(sys.modules["wan_core"].__file__).parent == ROOT / "wan_core"
        assert module.WEB_DIRECTORY == "./js"
        assert isinstance(module.NODE_CLASS_MAPPINGS, dict)
        assert set(module.NODE_CLASS_MAPPINGS) == set(module.NODE_DISPLAY_NAME_MAPPINGS)
    finally:
        for name in [n for n in sys.modules if n.startswith(spec.name)]:
            del sys.modules[name]
