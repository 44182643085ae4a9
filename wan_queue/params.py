"""Job parameters: ``--set``, ``--sweep``, ``--seeds`` and batch files, and how a KEY addresses graph inputs.

A KEY is either an input name, applied to every node that has it as a value (``steps``; ``seed`` also
matches ``noise_seed``), or ``NODE.input`` where NODE is a node id, its title (``_meta.title``) or its
class type. Values parse as JSON where they can (``4``, ``true``, ``[1, 2]``), else stay strings.
"""

from __future__ import annotations

import copy
import csv
import itertools
import json
from pathlib import Path
from typing import Any

from .convert import SEED_NAMES, declared_inputs, is_link
from .errors import ParameterError

Params = dict[str, Any]


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _split_assignment(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ParameterError(f"{option} {text!r}: expected KEY=VALUE (e.g. {option} steps=4)")
    return key.strip(), value


def parse_set(text: str) -> tuple[str, Any]:
    key, value = _split_assignment(text, "--set")
    return key, parse_value(value)


def parse_sweep(text: str) -> tuple[str, list]:
    """``KEY=V1,V2`` or ``KEY=[JSON list]`` (for values that contain commas)."""
    key, value = _split_assignment(text, "--sweep")
    parsed = parse_value(value)
    values = parsed if isinstance(parsed, list) else [parse_value(v) for v in value.split(",")]
    if not values:
        raise ParameterError(f"--sweep {text!r} has no values")
    return key, values


def parse_seeds(text: str) -> list[int]:
    """``1-8``, ``3``, or a comma list mixing both (``1,5,10-12``)."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            lo, sep, hi = part.strip().partition("-")
            seeds += list(range(int(lo), int(hi) + 1)) if sep else [int(lo)]
    except ValueError:
        raise ParameterError(f"--seeds {text!r}: expected N, A-B or a comma list of those (e.g. 1-8)") from None
    return seeds


def read_batch(path: Path) -> list[Params]:
    """One parameter dict per row: a CSV with a header of KEYs (cells parsed as JSON where they can; empty
    cells left out) or JSON Lines of {KEY: value} objects."""
    path = Path(path)
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        if not all(isinstance(r, dict) for r in rows):
            raise ParameterError(f"{path}: every line must be a JSON object of KEY: value")
        return rows
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as handle:
            return [
                {k: parse_value(v) for k, v in row.items() if k and v not in ("", None)}
                for row in csv.DictReader(handle)
            ]
    raise ParameterError(f"batch file {path}: expected a .csv or a .jsonl file")


def expand_jobs(
    rows: list[Params] | None, sets: list[tuple[str, Any]], sweeps: list[tuple[str, list]], seeds: list[int] | None
) -> list[Params]:
    """Every job's parameters: batch rows x sweep product x seeds, each over the ``--set`` values."""
    base = dict(sets)
    product = itertools.product(*[[(key, v) for v in values] for key, values in sweeps])
    combos = [dict(c) for c in product]
    jobs = []
    for row in rows or [{}]:
        for combo in combos:
            for seed in seeds or [None]:
                params = {**base, **row, **combo}
                jobs.append(params if seed is None else {**params, "seed": seed})
    return jobs


# --------------------------------------------------------------------------- addressing


def _matches_name(key: str, name: str) -> bool:
    return name == key or (key in SEED_NAMES and name in SEED_NAMES)


def _nodes_named(api: dict, ref: str) -> list[str]:
    for field in (lambda nid, n: nid, lambda nid, n: n.get("_meta", {}).get("title"), lambda nid, n: n["class_type"]):
        found = [nid for nid, node in api.items() if field(nid, node) == ref]
        if found:
            return found
    return []


def _value_inputs(api: dict) -> list[str]:
    return sorted({k for n in api.values() for k, v in n["inputs"].items() if not is_link(v)})


def resolve_key(api: dict, key: str, object_info: dict | None = None) -> list[tuple[str, str]]:
    """(node id, input name) pairs a KEY addresses; ParameterError when it addresses nothing."""
    ref, dot, name = key.rpartition(".")
    if dot and (nodes := _nodes_named(api, ref)):
        return [(nid, _node_input(api, nid, name, key, object_info)) for nid in nodes]
    found = [
        (nid, k) for nid, n in api.items() for k, v in n["inputs"].items() if _matches_name(key, k) and not is_link(v)
    ]
    if found:
        return found
    linked = sorted({nid for nid, n in api.items() if key in n["inputs"]})
    if linked:
        raise ParameterError(f"{key!r} is a link (from another node) in node(s) {linked}, not a value to set")
    titles = sorted({str(n.get("_meta", {}).get("title")) for n in api.values()})
    nodes = f"; and no node id, title ({titles}) or class type is {ref!r}" if dot else ""
    raise ParameterError(
        f"{key!r} addresses nothing: no node has an input of that name ({_value_inputs(api)}){nodes}. "
        "Use INPUT or NODE_TITLE_OR_ID.INPUT."
    )


def _node_input(api: dict, nid: str, name: str, key: str, object_info: dict | None) -> str:
    node = api[nid]
    if name in node["inputs"]:
        if is_link(node["inputs"][name]):
            raise ParameterError(f"{key!r}: input {name!r} of node {nid} is a link, not a value to set")
        return name
    info = (object_info or {}).get(node["class_type"])
    if info and name in [n for n, _spec, _req in declared_inputs(info)]:
        return name  # an optional input the graph left unset
    raise ParameterError(f"{key!r}: node {nid} ({node['class_type']}) has no input {name!r}: {sorted(node['inputs'])}")


def apply_params(api: dict, params: Params, object_info: dict | None = None) -> dict:
    """A copy of ``api`` with every addressed input set; keys apply in order, so later ones win."""
    out = copy.deepcopy(api)
    for key, value in params.items():
        for nid, name in resolve_key(out, key, object_info):
            out[nid]["inputs"][name] = copy.deepcopy(value)
    return out
