"""The `tavle` command on bad arguments, bad settings and a database that is not there
or not migrated: a message that says what to do and a non-zero exit, never a trace, an
SQL statement or its parameters (found by review: several printed SQLAlchemy's message
with the statement, or a Python exception's name)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.cli import main


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err and "[SQL:" not in err and "Error:" not in err, err
    return int(exit_info.value.code or 0), err


@pytest.mark.parametrize(
    "argv",
    [
        ["token", "kommuneadmin"],
        ["demo", "--students", "600"],
        ["archive", "status"],
        ["policy", "explain", "kommuneadmin", "read", "Student:1"],
    ],
)
def test_unmigrated_database_says_migrate(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv("TAVLE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'tom.db'}")
    monkeypatch.setenv("TAVLE_DEMO", "1")
    code, err = _run(argv, capsys)
    assert code == 1
    assert "tavle migrate" in err


def test_unreachable_database_says_so(monkeypatch: pytest.MonkeyPatch, capsys):
    # Port 9 (discard) on this machine: nothing listens there.
    monkeypatch.setenv("TAVLE_DATABASE_URL", "postgresql://postgres@127.0.0.1:9/ingen")
    monkeypatch.setenv("TAVLE_DEMO", "1")
    code, err = _run(["token", "kommuneadmin"], capsys)
    assert code == 1
    assert "får ikke kontakt med databasen" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["archive", "run", "--limit", "-1"], "positivt heltall"),
        (["archive", "run", "--limit", "0"], "positivt heltall"),
        (["serve", "--port", "99999"], "fra 1 til 65535"),
        (["serve", "--port", "x"], "positivt heltall"),
        (["demo", "--students", "-5"], "positivt heltall"),
        (["demo", "--students", "abc"], "positivt heltall"),
        (["demo", "--students", "599"], "minst 600"),
        (["demo", "--students", "5000000000"], "høyst 500000"),
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str], message: str, capsys):
    code, err = _run(argv, capsys)
    assert code == 2 and message in err


@pytest.mark.parametrize(
    "resource_id", ["Student:99999999999999999999", "Student:0", "Student:-1", "Student:١"]
)
def test_policy_explain_bad_resource_id(resource_id: str, capsys):
    code, err = _run(["policy", "explain", "kommuneadmin", "read", resource_id], capsys)
    assert code == 1 and "ugyldig ressurs-ID" in err


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TAVLE_PORT", "abc"),
        ("TAVLE_PORT", "70000"),
        ("TAVLE_SESSION_TTL", "soon"),
        ("TAVLE_ENV", "prod"),
    ],
)
def test_bad_setting_names_the_variable(
    name: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv(name, value)
    code, err = _run(["token", "kommuneadmin"], capsys)
    assert code == 1 and name in err


def test_serve_refuses_an_unmigrated_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv("TAVLE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'tom.db'}")
    code, err = _run(["serve", "--port", "1"], capsys)
    assert code == 1 and "tavle migrate" in err


def test_migrate_says_what_it_reached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys):
    """`tavle migrate` goes forward only: asked for an older revision it says so, instead
    of claiming to have migrated (alembic's upgrade to it does nothing)."""
    from core.migrate import head_revision

    monkeypatch.setenv("TAVLE_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'tavle.db'}")
    main(["migrate", "0002"])
    assert "0002" in capsys.readouterr().out
    main(["migrate"])
    assert head_revision() in capsys.readouterr().out
    code, err = _run(["migrate", "0001"], capsys)
    assert code == 1 and "går bare fremover" in err
    code, err = _run(["migrate", "9999"], capsys)
    assert code == 1 and "ukjent revisjon" in err


def test_demo_logins_are_refused_in_production(monkeypatch: pytest.MonkeyPatch, capsys):
    monkeypatch.setenv("TAVLE_ENV", "production")
    monkeypatch.setenv("TAVLE_DEMO", "1")
    code, err = _run(["token", "kommuneadmin"], capsys)
    assert code == 1 and "TAVLE_DEMO" in err and "production" in err


def test_ctrl_c_during_demo_leaves_the_database_empty(tmp_path: Path):
    """Ctrl+C while the demo is built: a short message and status 130, not a traceback,
    and nothing written (found by review: a KeyboardInterrupt traceback)."""
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    database = tmp_path / "tavle.db"
    env = {**os.environ, "TAVLE_DATABASE_URL": f"sqlite+aiosqlite:///{database}"}
    command = [sys.executable, "-m", "core.cli"]
    subprocess.run([*command, "migrate"], env=env, check=True, capture_output=True)
    process = subprocess.Popen(
        [*command, "demo", "--students", "50000"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # Ctrl+C's default action, even when the suite itself runs in the background
        # (a background job of a non-interactive shell starts with SIGINT ignored).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    # 50 000 students take ~10 s to build and write; 1.5 s in, the build is under way.
    time.sleep(1.5)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    text = err.decode()
    assert process.returncode == 130, text
    assert "avbrutt" in text and "Traceback" not in text
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM person").fetchone() == (0,)


def test_cli_token_needs_demo_mode(monkeypatch: pytest.MonkeyPatch, capsys):
    """A login without two-factor is for demo mode only (found by review: it printed a
    working token in production)."""
    monkeypatch.delenv("TAVLE_DEMO", raising=False)
    code, err = _run(["token", "kommuneadmin"], capsys)
    assert code == 1 and "TAVLE_DEMO=1" in err
