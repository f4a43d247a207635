"""When the agent counts a run finished: after its reply and the output the kernel sent first,
whichever order the shell and IOPub channels deliver them in."""

from __future__ import annotations

from typing import Any

from jupyter_client.session import Session

from portside.agent.execution import Run
from portside.agent.local.jupyter import JupyterConnection, _Pending
from portside.kernel import IOPUB_COUNT_KEY

KEY = "secret"


def connection_with_run() -> tuple[JupyterConnection, Run, Session, dict[str, Any]]:
    connection = JupyterConnection({"key": KEY, "signature_scheme": "hmac-sha256"})
    kernel = Session(key=KEY.encode())
    request = kernel.msg("execute_request", {"code": "print(1)"})
    run = Run("run-1", "query")
    connection._pending[request["header"]["msg_id"]] = _Pending(run)
    return connection, run, kernel, request


def received(connection: JupyterConnection, kernel: Session, msg: dict[str, Any]) -> Any:
    """The message as the agent's reader hands it on: serialized, signed, decoded."""
    return connection._decode(kernel.serialize(msg))


def records(run: Run) -> list[Any]:
    out = []
    while not run.records.empty():
        out.append(run.records.get_nowait())
    return out


def test_a_counted_reply_waits_for_the_output_it_counts() -> None:
    connection, run, kernel, request = connection_with_run()
    reply = kernel.msg(
        "execute_reply", {"status": "ok"}, parent=request, metadata={IOPUB_COUNT_KEY: 2}
    )
    connection._on_shell(received(connection, kernel, reply))
    assert not run.finished.is_set()

    stream = kernel.msg("stream", {"name": "stdout", "text": "1\n"}, parent=request)
    connection._on_iopub(received(connection, kernel, stream))
    assert not run.finished.is_set()

    error = kernel.msg("error", {"traceback": ["ZeroDivisionError"]}, parent=request)
    connection._on_iopub(received(connection, kernel, error))
    assert run.finished.is_set()
    kinds = [r[0] if isinstance(r, tuple) else r.status for r in records(run)]
    assert kinds == ["stdout", "stderr", "finished"]


def test_output_before_a_counted_reply_finishes_the_run_with_the_reply() -> None:
    connection, run, kernel, request = connection_with_run()
    stream = kernel.msg("stream", {"name": "stdout", "text": "1\n"}, parent=request)
    connection._on_iopub(received(connection, kernel, stream))
    assert not run.finished.is_set()

    reply = kernel.msg(
        "execute_reply", {"status": "ok"}, parent=request, metadata={IOPUB_COUNT_KEY: 1}
    )
    connection._on_shell(received(connection, kernel, reply))
    assert run.finished.is_set()


def test_a_reply_without_a_count_waits_for_idle() -> None:
    connection, run, kernel, request = connection_with_run()
    reply = kernel.msg("execute_reply", {"status": "ok"}, parent=request)
    connection._on_shell(received(connection, kernel, reply))
    stream = kernel.msg("stream", {"name": "stdout", "text": "1\n"}, parent=request)
    connection._on_iopub(received(connection, kernel, stream))
    assert not run.finished.is_set()

    idle = kernel.msg("status", {"execution_state": "idle"}, parent=request)
    connection._on_iopub(received(connection, kernel, idle))
    assert run.finished.is_set()
