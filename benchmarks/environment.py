"""What every benchmark prints first: the date, the machine and the software, plus peak-memory helpers."""

from __future__ import annotations

import datetime
import os
import platform
import resource


def machine() -> str:
    """One line: CPU model, cores, memory (GiB), OS and Python."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        memory = float("nan")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{model}, {os.cpu_count()} cores, {memory:.0f} GiB; {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}; load average {load:.1f} at start")


def header(name: str) -> None:
    """Print the date (UTC), the machine and the romanflow version before a benchmark's table."""
    from romanflow.version import __version__

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"benchmarks.{name}  {now}  romanflow {__version__}")
    print(f"machine: {machine()}", flush=True)


def peak_rss_gib(who: int = resource.RUSAGE_SELF) -> float:
    """Peak resident memory (GiB) of this process (``RUSAGE_SELF``) or of its waited-for children."""
    return resource.getrusage(who).ru_maxrss / 2**20


def verdict(misses: list[str]) -> int:
    """Print the targets missed (or that all were met) and return the exit status."""
    if misses:
        for miss in misses:
            print(f"TARGET MISSED: {miss}")
        return 1
    print("all targets met")
    return 0
