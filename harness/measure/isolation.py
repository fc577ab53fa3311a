"""Run each variant job in its own process, forked from a server that preloaded its backend.

A cell process starts in well under a second, yet its memory peak, threads and any crash or hang
are its own. There is one fork server per backend, preloading only what that backend needs, so an
ONNX Runtime cell does not carry torch in its memory. The parent only waits on a pipe; a child that
dies or outlives its timeout becomes an error or timeout outcome, and every other cell carries on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import multiprocessing.forkserver as forkserver
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.connection import Connection
from typing import Any

from harness.measure.execute import VariantOutcome, execute_variant

# every server needs these; a backend adds its runtime (Backend.preload)
BASE_PRELOAD = ("harness.measure.execute", "harness.registry", "numpy")

_SERVERS: dict[tuple[str, ...], Any] = {}


def run_isolated(
    job: Any,
    timeout_s: float,
    preload: Sequence[str] = (),
    work: Callable[[Any], Any] = execute_variant,
    failed: Callable[[str, str], Any] = VariantOutcome,
) -> Any:
    """``work(job)`` (by default ``execute_variant``, a module-level function) in a fresh child process,
    with a wall-clock limit; a child that dies or times out gives ``failed(status, reason)``."""
    context = multiprocessing.get_context("forkserver")
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child_main, args=(work, job, sender), daemon=True)
    with _server_for(tuple(dict.fromkeys([*BASE_PRELOAD, *preload]))):
        process.start()
    sender.close()
    try:
        if not receiver.poll(timeout_s):
            process.kill()
            process.join()
            return failed("timeout", f"no result within {timeout_s:g} s; the cell process was killed")
        try:
            outcome = receiver.recv()
        except EOFError:
            process.join()
            return failed("error", f"the cell process died ({exit_description(process.exitcode)})")
        process.join(timeout=30)
        return outcome
    finally:
        receiver.close()
        if process.is_alive():
            process.kill()


def _child_main(work: Callable[[Any], Any], job: Any, sender: Connection) -> None:
    from harness.quiet import quiet_third_party_warnings

    quiet_third_party_warnings()  # the fork server started fresh: the CLI's filters are not here
    sender.send(work(job))
    sender.close()


@contextlib.contextmanager
def _server_for(preload: tuple[str, ...]) -> Iterator[None]:
    """Route the next ``Process.start`` to the fork server that preloaded ``preload``.

    The standard library keeps one global server; its launcher looks the connect function up on
    the module at each start, so pointing it at another server instance for one start is enough.
    """
    server = _SERVERS.get(preload)
    if server is None:
        server = forkserver.ForkServer()
        server.set_forkserver_preload([m for m in preload if _importable(m)])
        _SERVERS[preload] = server
    default = forkserver.connect_to_new_process
    forkserver.connect_to_new_process = server.connect_to_new_process
    try:
        yield
    finally:
        forkserver.connect_to_new_process = default


def _importable(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is missing
        return False


def exit_description(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        import signal

        return f"killed by signal {signal.Signals(-code).name}"
    return f"exit code {code}"
