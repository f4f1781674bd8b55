"""What every benchmark script records with its table: the machine, torch,
the date and the commit; and appending it to benchmarks/RESULTS.md."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess

import torch

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "benchmarks", "RESULTS.md")


def _git(*args: str) -> str:
    """git's answer, or '' where git is missing (the GPU machine may lack it)."""
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def title(script: str, device: str) -> str:
    """'<script> on <device> (<machine>), torch X, <date>, commit <sha>[ + local changes]'."""
    machine = (torch.cuda.get_device_name() if device == "cuda" else
               f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    # PYVS_COMMIT (set by scripts/gpu_check.sh) names the commit of a copied
    # tree whose .git, if any, is not that commit's.
    commit = os.environ.get("PYVS_COMMIT")
    if not commit:
        # The results file itself does not count: earlier tables of the same run append to it.
        dirty = " + local changes" if _git("status", "--porcelain", "--untracked-files=no", "--", ".",
                                           ":!benchmarks/RESULTS.md") else ""
        commit = (_git("rev-parse", "--short", "HEAD") or "unknown") + dirty
    return (f"{script} on {device} ({machine}), torch {torch.__version__}, {datetime.date.today()}, "
            f"commit {commit}")


def report(head: str, notes: str, lines: list[str], append: bool) -> None:
    """Prints the table; with append, adds it to benchmarks/RESULTS.md."""
    print("\n".join([head, notes, ""] + lines))
    if append:
        with open(RESULTS, "a") as f:
            f.write(f"\n### {head}\n\n{notes}\n\n" + "\n".join(lines) + "\n")
