"""CI must fail, never skip, when PostgreSQL is unreachable."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_suite_fails_when_postgres_is_unreachable():
    env = {**os.environ, "TAVLE_TEST_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/none"}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/test_smoke.py", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "unreachable" in result.stdout + result.stderr
