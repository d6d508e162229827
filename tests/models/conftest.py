"""Shared fixtures: the shipped classifier is loaded once per test session (it is the slow part)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def classifier():  # type: ignore[no-untyped-def]
    """The shipped classifier with the default taxonomy."""
    from models import load_classifier

    return load_classifier()


@pytest.fixture(scope="session")
def artifacts_with() -> Callable[..., Path]:
    """A maker of copies of the shipped artifacts (under the folder it is given, as ``artifacts/``)
    whose manifest's touchpoint section is updated with its keywords: how a test runs the shipped
    weights in another mode (one stack or two) whichever mode they ship in."""
    from models.classifier import ARTIFACTS_DIR

    def make(root: Path, **touchpoint: object) -> Path:
        out = root / "artifacts"
        shutil.copytree(ARTIFACTS_DIR, out)
        manifest = json.loads((out / "manifest.json").read_text())
        manifest["touchpoint"].update(touchpoint)
        (out / "manifest.json").write_text(json.dumps(manifest))
        return out

    return make
