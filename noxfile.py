"""nox sessions: `nox` runs lint, tests and e2e; benchmarks run on demand (`nox -s bench`)."""

from __future__ import annotations

from pathlib import Path

import nox

nox.needs_version = ">=2024.4"
nox.options.default_venv_backend = "uv|virtualenv"
nox.options.reuse_venv = "yes"

ROOT = Path(__file__).parent
EXTRAS = nox.project.load_toml(ROOT / "pyproject.toml")["project"]["optional-dependencies"]
BENCHMARKS = ("synth.py", "sync.py", "podman.py")
#: The 9p-like FUSE share the sync benchmark seeds over (tests/support/ninepfs.py) runs on it.
FUSE = next(r for r in EXTRAS["test"] if r.startswith("mfusepy"))
SHELL_SCRIPTS = [".ci/run", *sorted(str(p.relative_to(ROOT)) for p in ROOT.glob("scripts/*.sh"))]


def _pytest(session: nox.Session, *args: str) -> None:
    session.install("-e", ".[test]")
    session.run("pytest", *args, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff over the Python code, ShellCheck over the shell scripts; reports every failure."""
    session.install(*EXTRAS["lint"])
    failures = []
    for command in (["ruff", "check", "."], ["shellcheck", *SHELL_SCRIPTS]):
        try:
            session.run(*command, external=command[0] == "shellcheck")
        except nox.command.CommandFailed:
            failures.append(command[0])
    if failures:
        session.error(f"failed: {', '.join(failures)}")


#: The cluster engines' tests (a fake API server): engines/kubernetes.py must stay 85 % covered.
CLUSTER_TESTS = ["tests/test_kubernetes.py", "tests/test_kubernetes_api.py", "tests/test_minikube.py"]


@nox.session
def tests(session: nox.Session) -> None:
    """Unit, snapshot and sync-agent tests (real files, FUSE, ganesha in podman)."""
    if session.posargs:  # a selection: everything it names, no coverage floor
        _pytest(session, "tests", "--ignore=tests/e2e")
        return
    _pytest(session, *CLUSTER_TESTS, "--cov=filesim.engines.kubernetes", "--cov-report=term-missing",
            "--cov-fail-under=85")
    _pytest(session, "tests", "--ignore=tests/e2e", *(f"--ignore={t}" for t in CLUSTER_TESTS))


@nox.session
def e2e(session: nox.Session) -> None:
    """Deploy the 7 NAS servers on the local engine and check every user path, then tear down."""
    _pytest(session, "tests/e2e")


@nox.session(default=False)
def mutants(session: nox.Session) -> None:
    """Mutation testing of plan.py, guard.py, apply.py and names.py ([tool.mutmut]): what survives.

    Posargs pick mutants by name, e.g. ``nox -s mutants -- 'filesim.sync.plan*'`` (seconds;
    all of apply.py's ~25 minutes, names.py's ~15: their own tests first, then the model test).
    """
    session.install("-e", ".[test]", "mutmut>=3.3")
    # A mutant that loops appending (names._decode) takes GBs a second: 4 GiB each, then it fails.
    session.run("prlimit", f"--as={4 * 2**30}", "mutmut", "run", *session.posargs, external=True)
    session.run("mutmut", "results")


@nox.session(default=False)
def bench(session: nox.Session) -> None:
    """Synth time for 7 and 100 NAS servers against a bare cdk8s app (figures, no asserts)."""
    session.install("-e", ".")
    session.run("python", "benchmarks/synth.py", *session.posargs)


@nox.session(name="bench-sync", default=False)
def bench_sync(session: nox.Session) -> None:
    """The sync agent against the research's rsync loop: latency, idle cost, seed."""
    session.install("-e", ".", FUSE)
    session.run("python", "benchmarks/sync.py", *session.posargs)


@nox.session(name="bench-podman", default=False)
def bench_podman(session: nox.Session) -> None:
    """Image build, deploy to all-ready, idle RSS per NAS pod, check-sync latencies."""
    session.install("-e", ".")
    session.run("python", "benchmarks/podman.py", *session.posargs)


@nox.session(name="bench-smoke", default=False)
def bench_smoke(session: nox.Session) -> None:
    """Every benchmark in a tiny configuration: proves they run (CI), gives no figures."""
    session.install("-e", ".", FUSE)
    for script in BENCHMARKS:
        session.run("python", f"benchmarks/{script}", "--smoke")
