"""Shared fixtures: the shipped classifier is loaded once per test session (it is the slow part)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def classifier():  # type: ignore[no-untyped-def]
    """The shipped classifier with the default taxonomy."""
    from models import load_classifier

    return load_classifier()
