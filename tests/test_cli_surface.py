"""Walk the CLI's whole argument surface with bad values: every one ends in a typed error, never a traceback.

The options are read from the parser itself, so an option added later is walked too (with generic bad
values, until it gets its own entry in BAD). Each run happens in-process through ``main``; bad values
are refused before any model loads, so the walk stays fast.
"""

from __future__ import annotations

import argparse
import logging

import pytest

import wan_core.errors as errors
from wan_core.cli import build_parser, main
from wan_core.tiny_build import write_tiny_models

T2V, VAE, TE = (
    "wan2.1_t2v_1.3B_bf16.safetensors",
    "wan_2.1_vae.safetensors",
    "umt5_xxl_fp8_e4m3fn_scaled.safetensors",
)
PATHS = ["", "{dev}", "{missing}", "{dir}", "{text}"]
NUMBER = ["", "abc", "nan", "inf", "-1"]
GENERIC = ["", "abc", "nan", "-1", "{dev}", "\udcff"]
# option -> bad values for `generate` ({...}: files made by the fixture). Each must fail.
BAD: dict[str, dict[str, list[str]]] = {
    "generate": {
        "--model": [*PATHS, "{vae}"],
        "--model-low": [*PATHS, "{vae}"],
        "--vae": [*PATHS, "{t2v}"],
        "--text-encoder": [*PATHS, "{vae}"],
        "--tokenizer": ["{dev}", "{missing}", "{text}"],
        "--clip-vision": [*PATHS, "{vae}"],
        "--lora": ["", "{dev}", "{missing}", "{vae}", "{lora}:nan", "{lora}:1:2:3", "{lora}:1e9"],
        "--prompt": ["\udcff"],
        "--negative-prompt": ["\udcff"],
        "--frames": [*NUMBER, "0", "6", "2.5", "99999999"],
        "--size": ["", "abc", "0x16", "16x0", "15x16", "16", "16x16x16", "nanxnan", "100000x16", "1e3x16"],
        "--steps": [*NUMBER, "0", "1.5", "100000"],
        "--cfg": [*NUMBER, "1,2,3", "3,4", "3,nan", ","],
        "--shift": [*NUMBER, "0"],
        "--solver": ["", "ddim"],
        "--seed": [*NUMBER, "1.5", str(2**64)],
        "--fps": [*NUMBER, "0", "1e-9", "1e9"],
        "--image": PATHS,
        "--last-image": PATHS,
        "--control-video": PATHS,
        "--control-mask": PATHS,
        "--reference-image": PATHS,
        "--vace-strength": [*NUMBER, "0.5"],
        "--device": ["", "gpu", "cuda:99", "cpu:x"],
        "--dtype": ["", "fp99", "int4"],  # int8 is a real choice since the INT8 branch (issue 19)
        "--attention": ["", "warp"],
        "--out": ["", "{dev}", "{dir}", "{text}/x.mp4", "x.avi", "{dir}/missing/../x.mkv"],
    },
    "selftest": {
        "--out": ["", "{dev}", "x.avi", "{text}/x.mp4"],
        "--frames": [*NUMBER, "6"],
        "--size": ["abc", "0x64", "20x16"],
        "--steps": [*NUMBER, "0"],
        "--seed": [*NUMBER],
        "--device": ["gpu", "cuda:99"],
        "--models-dir": ["{dev}", "{text}", "{text}/sub"],
    },
    "make-tiny-models": {
        "--seed": ["abc", "-1", "nan"],
        "--only": ["bogus.safetensors"],
        "directory": ["{dev}", "{text}", "{text}/sub", ""],
    },
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    tiny = write_tiny_models(
        tmp_path_factory.getbasetemp() / "wan_core_tiny",
        names=(T2V, VAE, TE, "wan2.1_t2v_1.3B_example_lora.safetensors"),
        overwrite=False,
    )
    work = tmp_path_factory.mktemp("surface")
    (work / "notes.txt").write_text("not a model, an image or a video")
    return {
        "t2v": str(tiny[T2V]),
        "vae": str(tiny[VAE]),
        "te": str(tiny[TE]),
        "lora": str(tiny["wan2.1_t2v_1.3B_example_lora.safetensors"]),
        "dev": "/dev/null",
        "missing": str(work / "missing.safetensors"),
        "dir": str(work),
        "text": str(work / "notes.txt"),
        "work": work,
    }


def _valid(command: str, files: dict) -> dict[str, str]:
    """A valid command line per sub-command (as option -> value), small enough to fail fast when broken."""
    out = str(files["work"] / "out.mp4")
    if command == "generate":
        return {
            "--model": files["t2v"],
            "--vae": files["vae"],
            "--text-encoder": files["te"],
            "--prompt": "x",
            "--frames": "1",
            "--size": "16x16",
            "--steps": "1",
            "--device": "cpu",
            "--out": out,
        }
    if command == "selftest":
        return {"--out": out, "--frames": "1", "--size": "16x16", "--steps": "1"}
    return {"directory": str(files["work"] / "tiny")}


def _surface() -> list[tuple[str, str]]:
    """(sub-command, option) for every option that takes a value, straight from the parser."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    found = []
    for command, subparser in sub.choices.items():
        for action in subparser._actions:
            if action.nargs == 0 or isinstance(action, argparse._HelpAction):
                continue  # flags (--offload, -h) take no value
            found.append((command, action.option_strings[0] if action.option_strings else action.dest))
    return found


SURFACE = _surface()


def test_every_option_has_its_bad_values():
    missing = sorted(f"{c} {o}" for c, o in SURFACE if o not in BAD.get(c, {}))
    print(f"options walked with generic values only: {missing}")
    assert {(c, o) for c, o in SURFACE} >= {(c, o) for c in BAD for o in BAD[c]}, "BAD lists an unknown option"


def _argv(command: str, option: str, value: str, files: dict) -> list[str]:
    flags = _valid(command, files)
    flags[option] = value.format(**{k: v for k, v in files.items() if isinstance(v, str)})
    argv = ["-q", command]
    for key, val in flags.items():
        argv += [val] if not key.startswith("-") else [f"{key}={val}"]  # '=' keeps values like -1 values
    return argv


@pytest.mark.parametrize(("command", "option"), SURFACE, ids=[f"{c}{o}" for c, o in SURFACE])
def test_bad_values_give_typed_errors_never_tracebacks(command, option, files, capsys, caplog, monkeypatch):
    monkeypatch.setenv("WAN_CORE_CACHE", str(files["work"] / "cache"))
    known = option in BAD.get(command, {})
    for value in BAD.get(command, {}).get(option, GENERIC):
        caplog.clear()
        try:
            code = main(_argv(command, option, value, files))
        except SystemExit as exc:  # argparse: bad syntax, usage printed
            code = exc.code
        err = capsys.readouterr().err
        where = f"{command} {option}={value!r}"
        assert "Traceback" not in err and "Traceback" not in caplog.text, f"{where}:\n{err}{caplog.text}"
        assert code in ((1, 2) if known else (0, 1, 2)), f"{where}: exit {code}\n{err}{caplog.text}"
        if code == 1:
            record = [r for r in caplog.records if r.levelno >= logging.ERROR][-1].getMessage()
            name = record.split(":", 1)[0]
            assert isinstance(getattr(errors, name, None), type), f"{where}: not a typed error: {record}"
        if code == 2:
            assert "error: argument" in err or "error:" in err, f"{where}: {err}"
        assert not list(files["work"].glob("*.partial*")), where
