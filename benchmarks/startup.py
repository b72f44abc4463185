"""Start-up cost of the CLI against a bare Typer hello-world, in the same run.

Times whole processes (interpreter start-up included, as a user pays it):
``revoctl --version``, ``revoctl --help`` and one TAB-completion request, and
the same three against a one-command Typer app. Prints the medians and the
ratios revoctl / bare Typer.

    python benchmarks/startup.py [--runs 30]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
from pathlib import Path

from _timing import time_process, write_bytecode

HELLO = '''
import typer

app = typer.Typer()


def _version(value: bool) -> None:
    if value:
        print("hello 1.0")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True),
) -> None:
    """A bare Typer app."""


@app.command()
def ping(name: str = "world") -> None:
    """Say hello."""
    print(f"hello {name}")


@app.command()
def pong() -> None:
    """Say goodbye."""


if __name__ == "__main__":
    app(prog_name="hello")
'''


# A completion request exits non-zero by design: only the time of each run matters.
measure = functools.partial(time_process, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    revoctl = [sys.executable, "-m", "revoctl"]
    write_bytecode()
    with tempfile.TemporaryDirectory() as tmp:
        hello_path = Path(tmp) / "hello.py"
        hello_path.write_text(HELLO)
        hello = [sys.executable, str(hello_path)]
        base = {**os.environ, "NO_COLOR": "1"}
        complete_revoctl = {
            **base,
            "_REVOCTL_COMPLETE": "complete_bash",
            "COMP_WORDS": "revoctl db ",
            "COMP_CWORD": "2",
        }
        complete_hello = {
            **base,
            "_HELLO_COMPLETE": "complete_bash",
            "COMP_WORDS": "hello p",
            "COMP_CWORD": "1",
        }
        cases = [
            ("--version", [*revoctl, "--version"], base, [*hello, "--version"], base),
            ("--help", [*revoctl, "--help"], base, [*hello, "--help"], base),
            ("completion", revoctl, complete_revoctl, hello, complete_hello),
        ]
        python = statistics.median(measure([sys.executable, "-c", "pass"], base, args.runs))
        print(f"python -c pass: {python:.1f} ms (median of {args.runs}; included in every row)\n")
        print(f"{'case':<12} {'revoctl ms':>11} {'bare typer ms':>14} {'ratio':>7}")
        for name, ours, our_env, theirs, their_env in cases:
            measure(ours, our_env, 2)  # warm the page cache
            measure(theirs, their_env, 2)
            mine_runs: list[float] = []
            bare_runs: list[float] = []
            for _ in range(args.runs):  # in turn: a busy machine weighs on both sides alike
                mine_runs += measure(ours, our_env, 1)
                bare_runs += measure(theirs, their_env, 1)
            mine, bare = statistics.median(mine_runs), statistics.median(bare_runs)
            print(f"{name:<12} {mine:>11.1f} {bare:>14.1f} {mine / bare:>6.2f}x")


if __name__ == "__main__":
    main()
