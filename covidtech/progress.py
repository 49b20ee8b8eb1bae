"""Text progress bars for long work (simulation, replay): one line per report, so they read
the same on a terminal and in a log file."""

from __future__ import annotations


def bar(done: int, total: int, width: int = 24) -> str:
    """``[#########---------------]  37%``; a total of 0 counts as done."""
    fraction = 1.0 if total <= 0 else min(1.0, max(0.0, done / total))
    filled = round(fraction * width)
    return f"[{'#' * filled}{'-' * (width - filled)}] {fraction:4.0%}"
