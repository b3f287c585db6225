"""Development sessions. ``nox`` runs ``tests``, ``lint`` and ``typecheck``; ``bench``,
``soak`` and ``fuzz`` are run by name (``nox -s bench``)."""

from __future__ import annotations

from pathlib import Path

import nox
from nox.command import CommandFailed

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = True

PYTHON = "3.11"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite, on asyncio and trio."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict over the package."""
    session.install("-e", ".[test,bench]", "mypy")
    session.run("mypy", "o2x")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks: ratios measured side by side in one run (see benchmarks/README.md)."""
    session.install("-e", ".[test,bench]")
    scripts = sorted(Path("benchmarks").glob("bench_*.py"))
    if session.posargs:  # nox -s bench -- frames  runs benchmarks/bench_frames.py only
        scripts = [s for s in scripts if s.stem.removeprefix("bench_") in session.posargs]
    # Every script runs, even after one has missed a target (it exits with 1); the
    # session fails at the end, naming them.
    failed = []
    for script in scripts:
        try:
            session.run("python", str(script))
        except CommandFailed:
            failed.append(script.stem)
    if failed:
        session.error(f"missed a target or failed: {', '.join(failed)} (see above)")


@nox.session(python=PYTHON)
def fuzz(session: nox.Session) -> None:
    """Fuzz the wire format with atheris: ``nox -s fuzz -- 600`` runs for 600 s (the default).

    Further arguments go to libFuzzer (``nox -s fuzz -- 60 -jobs=4``). The corpus
    grows in .nox/fuzz/tmp/corpus across runs; crashes are written to
    .nox/fuzz/tmp/artifacts (see docs/reliability.md, "Fuzzing").
    """
    seconds, *extra = session.posargs or ["600"]
    session.install("-e", ".", "atheris")
    tmp = Path(session.create_tmp())
    corpus, artifacts = tmp / "corpus", tmp / "artifacts"
    corpus.mkdir(exist_ok=True)
    artifacts.mkdir(exist_ok=True)
    session.run(
        "python",
        "tests/fuzz/fuzz_frames.py",
        str(corpus),
        "tests/fuzz/seeds",
        f"-max_total_time={int(seconds)}",
        "-max_len=4096",
        "-rss_limit_mb=2048",
        "-timeout=10",
        "-print_final_stats=1",
        f"-artifact_prefix={artifacts}/",
        *extra,
    )


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The long soak test: ``nox -s soak -- --minutes 15 --backend asyncio|trio|both``.

    A simulated car under random link drops, silences, corrupted frames, advertising
    pauses and every notification size, checked against its ground-truth log
    (tests/soak.py; the rules and figures are in docs/reliability.md, "Soak"). Prints
    a table; exits non-zero if a check failed. ``--parallel`` runs both backends at once.
    """
    session.install("-e", ".[test]")
    session.run("python", "tests/soak.py", *session.posargs)
