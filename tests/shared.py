"""Paths into ../shared (beside the project); tests that need it skip when it is absent."""
import os

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("EARMARK_SHARED", os.path.join(os.path.dirname(REPO), "shared"))


def shared_path(*parts: str) -> str:
    """Path under ../shared, or skip the test with a clear message when it is missing."""
    path = os.path.join(SHARED, *parts)
    if not os.path.exists(path):
        pytest.skip(f"{path} not found: this test needs the shared data folder beside the "
                    "project (../shared, present in CI); set EARMARK_SHARED to point elsewhere")
    return path
