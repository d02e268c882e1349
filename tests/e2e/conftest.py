"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.approverproc import short_dir


@pytest.fixture
def folder() -> Iterator[Path]:
    """A private folder with a short path: the approver's ipc socket path must fit sun_path."""
    with short_dir() as path:
        yield path
