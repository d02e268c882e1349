"""Fixtures of the shared-code tests."""

from __future__ import annotations

import pytest

from aip.shared.dlp.redactor import Redactor
from tests.shared.dlpkit import cfg


@pytest.fixture
def red() -> Redactor:
    """A redactor with the built-in rules only (the DLP message tests)."""
    return Redactor.from_config(cfg())
