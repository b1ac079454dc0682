"""Progress lines for logs that a reader of a Snakemake or SLURM job log can use: "what,
i/N, elapsed, ETA". tqdm's bar is off when the output is not a terminal, which under
Snakemake and SLURM it never is; these are plain log lines, one every ``every`` steps."""

from __future__ import annotations

import logging
import time


def duration(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``2 h 07 min``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


class Progress:
    """Log ``<label> <i>/<total>[: detail] (elapsed ..., ETA ...)`` at steps ``every``,
    ``2*every``, ... and at the last one. The ETA is the mean time per step so far times
    the steps left (steps done before a resume, ``start``, are not timed)."""

    def __init__(self, label: str, total: int, logger: logging.Logger, every: int = 1, start: int = 0) -> None:
        self.label, self.total, self.log, self.every, self.start = label, total, logger, max(1, every), start
        self.t0 = time.monotonic()

    def line(self, done: int, detail: str = "") -> str:
        elapsed = time.monotonic() - self.t0
        timed = done - self.start
        eta = elapsed / timed * (self.total - done) if timed > 0 else float("nan")
        eta_text = duration(eta) if eta == eta else "?"
        return f"{self.label} {done}/{self.total}{': ' + detail if detail else ''} (elapsed {duration(elapsed)}, ETA {eta_text})"

    def step(self, done: int, detail: str = "") -> None:
        if done % self.every == 0 or done == self.total:
            self.log.info(self.line(done, detail))
