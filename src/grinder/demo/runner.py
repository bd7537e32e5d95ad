"""Running the demo: the run directory, the logs, the event loop, the artifacts, the exit code."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

from grinder.demo.cases import Demo
from grinder.demo.options import ARTIFACTS, SERVICE_LOG, DemoOptions
from grinder.demo.output import print_banner, print_results
from grinder.reporting.logs import LOGGER_NAME, configure_logging
from grinder.service.artifacts import RunDir, Tee, clean_old_days
from grinder.service.defaults import DEFAULT_ARTIFACT_TTL_DAYS
from grinder.service.main import write_artifacts


def _configure_logs(run_dir: RunDir, verbose: bool) -> Path:
    """Every event line goes to ``service.log`` in the run directory; to stderr only with -v."""
    path = run_dir.path / SERVICE_LOG
    logger = configure_logging(log_file=path, level=logging.INFO)
    for handler in logger.handlers:
        if not isinstance(handler, logging.FileHandler):
            handler.setLevel(logging.INFO if verbose else logging.CRITICAL)
    return path


def _say_error(demo: Demo, exc: Exception) -> None:
    """The exception that ended the run, on one line."""
    demo.line(f"demo error: {' '.join(f'{type(exc).__name__}: {exc}'.split())}")


async def _run(demo: Demo) -> int:
    try:
        await asyncio.wait_for(demo.run(), 150)
    except Exception as exc:
        _say_error(demo, exc)
        return 1
    finally:
        await demo.stop()
    return 0 if demo.results and all(r.ok for r in demo.results) else 1


async def _run_ceremony(demo: Demo) -> int:
    """``--ceremony``: 0 after a clean stop (signal or ``--hold``), 1 when something failed."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        await demo.hold(stop)
    except Exception as exc:
        _say_error(demo, exc)
        return 1
    finally:
        await demo.stop()
        for sig in signals:
            loop.remove_signal_handler(sig)
        if demo.control_socket is not None:
            with contextlib.suppress(OSError):
                demo.control_socket.unlink(missing_ok=True)
                demo.control_socket.parent.rmdir()
    return 0


def run_demo(opts: DemoOptions, out: TextIO | None = None) -> int:
    """Run the demo; 0 when every case behaved as expected, 1 otherwise."""
    now = datetime.now(UTC)
    clean_old_days(opts.root, DEFAULT_ARTIFACT_TTL_DAYS, now.date())
    run_dir = RunDir.create(opts.root, now)
    log_path = _configure_logs(run_dir, opts.verbose)
    tee = Tee(run_dir.stdout_log, out or sys.stdout)
    started = time.monotonic()
    try:
        print_banner(tee, opts, run_dir)
        demo = Demo(opts, tee, run_dir)
        code = asyncio.run(_run_ceremony(demo) if opts.ceremony else _run(demo))
        if not opts.ceremony:
            print_results(tee, demo.results)
        if demo.service is not None and demo.service_opts is not None:
            write_artifacts(demo.service, demo.service_opts, run_dir, code, tee)
        tee.line(f"  demo took {time.monotonic() - started:.1f} s; run directory {run_dir.path}")
        files = [*ARTIFACTS, run_dir.budget_state.name, log_path.name]
        tee.line(f"  files: {' '.join(files)}")
        tee.line(f"exit_code={code}")
        return code
    finally:
        tee.close()
        logging.getLogger(LOGGER_NAME).handlers.clear()
