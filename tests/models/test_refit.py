"""The shared command line of ``python -m models.recovery | relevance | magic`` (``models.refit``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from models import magic
from models.classifier import ARTIFACTS_DIR, Classifier
from models.refit import command_line, refit_parser, start


def test_the_shared_options_are_declared_once_and_each_command_adds_its_own() -> None:
    full = refit_parser("python -m x", "what x does", "gate", version=True, data=True)
    args = full.parse_args(["model", "--out", "copy", "--version", "v2", "--data", "d", "--threads", "4"])
    assert (args.artifacts, args.out, args.version, args.data, args.threads) == (
        Path("model"),
        Path("copy"),
        "v2",
        Path("d"),
        4,
    )
    assert "write a copy with the gate here" in full.format_help()
    bare = refit_parser("python -m y", "what y does", "detector", version=False, data=False)
    with pytest.raises(SystemExit):
        bare.parse_args(["model", "--version", "v2"])
    assert bare.parse_args(["model"]).threads == 2


def test_start_writes_in_place_or_into_a_copy(tmp_path: Path) -> None:
    source = tmp_path / "model"
    source.mkdir()
    (source / "manifest.json").write_text("{}")
    parser = refit_parser("p", "d", "part", version=False, data=False)
    assert start(parser.parse_args([str(source)])) == source
    copy = tmp_path / "copy"
    assert start(parser.parse_args([str(source), "--out", str(copy)])) == copy
    assert (copy / "manifest.json").read_text() == "{}"


def test_the_command_recorded_is_the_one_run() -> None:
    assert command_line("models.magic", ["DIR", "--out", "X"]) == "python -m models.magic DIR --out X"


@pytest.mark.slow
def test_the_magic_command_writes_its_choice_into_a_copy(tmp_path: Path) -> None:
    out = tmp_path / "copy"
    assert magic.main([str(ARTIFACTS_DIR), "--out", str(out), "--version", "refit"]) == 0
    shipped = json.loads((ARTIFACTS_DIR / "manifest.json").read_text())["moment"]
    written = json.loads((out / "manifest.json").read_text())
    assert written["model_version"] == "refit"
    assert (
        written["moment"]["magic_choice"]["command"]
        == f"python -m models.magic {ARTIFACTS_DIR} --out {out} --version refit"
    )
    # the shipped floor is the one this rule chooses, and the shipped folder is left alone
    assert written["moment"]["magic_min_probability"] == shipped["magic_min_probability"]
    assert Classifier(out).magic_min_probability == shipped["magic_min_probability"]
