"""CI must fail, never skip, when PostgreSQL is unreachable."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("postgresql://postgres@127.0.0.1:9/none", "unreachable"),
        # A CI secret that is missing: it must not pass quietly on SQLite.
        ("", "set but empty"),
    ],
)
def test_suite_fails_when_postgres_is_unreachable(url: str, message: str):
    env = {**os.environ, "TAVLE_TEST_DATABASE_URL": url}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_smoke.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
