"""``portside run``: code and files, live output, input(), images, exit codes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ai.backend.client.exceptions import BackendAPIError
from ai.backend.client.session import Session

from .conftest import CLI, assert_one_line_error, describe


def test_run_code_prints_its_output_and_exits_with_its_code(
    cli: CLI, session_name: Callable[[], str]
) -> None:
    name = session_name()
    result = cli("run", "python", "-t", name, "-c", 'print("hello from portside")')
    assert result.returncode == 0, describe(result)
    assert result.stdout == "hello from portside\n"
    assert f"Session {name} is ready" in result.stderr
    assert "Execution finished (exit code 0)" in result.stderr
    # The same name reuses the running session, and the exit code is the program's.
    failed = cli("run", "python", "-t", name, "-c", "import sys; sys.exit(3)")
    assert failed.returncode == 3, describe(failed)
    assert f"Reusing session {name}" in failed.stderr
    errors = cli("run", "python", "-t", name, "-q", "-c", "1/0")
    assert errors.returncode == 1
    assert "ZeroDivisionError" in errors.stderr
    assert "Session" not in errors.stderr  # --quiet: no status lines


def test_run_files_with_build_and_exec(cli: CLI, session_name: Callable[[], str]) -> None:
    (cli.cwd / "src").mkdir()
    (cli.cwd / "src" / "greet.py").write_text("def greet(who):\n    return f'hi {who}'\n")
    (cli.cwd / "main.py").write_text(
        "import sys\nfrom src.greet import greet\n"
        "print(greet(open('built.txt').read().strip()), sys.argv[1:])\n"
    )
    result = cli(
        "run",
        "python",
        "main.py",
        "src/greet.py",
        "-t",
        session_name(),
        "--build",
        "echo builder > built.txt",
        "--exec",
        "python main.py --fast",
        "--rm",
    )
    assert result.returncode == 0, describe(result)
    assert result.stdout.strip() == "hi builder ['--fast']"
    assert "Uploading 2 files" in result.stderr
    assert "100%" in result.stderr
    assert "Destroyed session" in result.stderr


def test_run_files_exit_code_and_default_exec(cli: CLI, session_name: Callable[[], str]) -> None:
    (cli.cwd / "main.py").write_text("print('default exec'); raise SystemExit(5)\n")
    result = cli("run", "python", "main.py", "-t", session_name(), "--rm")
    assert result.returncode == 5, describe(result)
    assert "default exec" in result.stdout


def test_run_answers_input_from_stdin(cli: CLI, session_name: Callable[[], str]) -> None:
    code = 'name = input("Who are you? ")\nprint(f"Hello, {name}!")'
    result = cli("run", "python", "-t", session_name(), "--rm", "-c", code, stdin="Ada\n")
    assert result.returncode == 0, describe(result)
    assert result.stdout == "Who are you? Hello, Ada!\n"


def test_run_saves_images_and_says_where(cli: CLI, session_name: Callable[[], str]) -> None:
    name = session_name()
    code = "import matplotlib.pyplot as plt\nplt.plot([1, 4, 9])\nplt.show()\nprint('plotted')"
    result = cli("run", "python", "-t", name, "--rm", "-c", code, "--output-dir", "plots")
    assert result.returncode == 0, describe(result)
    assert "plotted" in result.stdout
    saved = sorted((cli.cwd / "plots").iterdir())
    assert [p.name for p in saved] == [f"{name}-output-1.png"]
    assert saved[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert f"Saved image/png output to {saved[0].relative_to(cli.cwd)}" in result.stderr


def test_run_rm_destroys_the_session(
    cli: CLI, api: Session, session_name: Callable[[], str]
) -> None:
    name = session_name()
    cli.ok("run", "python", "-t", name, "--rm", "-q", "-c", "pass")
    with pytest.raises(BackendAPIError) as e:
        api.ComputeSession(name).get_info()
    assert e.value.status == 404


def test_run_errors_are_one_line(cli: CLI) -> None:
    line = assert_one_line_error(cli("run", "no-such-image", "-c", "print(1)"))
    assert "unknown image 'no-such-image'" in line
    usage = cli("run", "python")
    assert usage.returncode == 2
    assert "give either code with -c or FILES" in usage.stderr
    debug = cli("--debug", "run", "no-such-image", "-c", "print(1)")
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert "BackendAPIError" in debug.stderr
