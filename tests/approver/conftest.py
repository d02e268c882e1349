"""Fixtures for approver tests: a short private folder for ipc endpoints."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.approverproc import short_dir


@pytest.fixture
def folder() -> Iterator[Path]:
    with short_dir() as path:
        yield path
