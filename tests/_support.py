"""Helpers shared by the test suites (on pytest's ``pythonpath``: ``from _support import ...``)."""

from __future__ import annotations

import os
import shutil
import socket

import pytest


def require_tool(name: str, install_hint: str) -> str:
    """Path of the executable ``name``. Missing: a failure under ``CI=true`` (a test that skips
    in CI is not a passing test), a skip elsewhere."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed ({install_hint})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
