"""Progress on a terminal, and the summaries a bulk run ends with."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

__all__ = ["Progress", "PullSummary", "PushSummary"]


class Progress:
    """One line redrawn in place (carriage return), at most ten times a second.

    ``enabled=None`` draws only when ``stream`` is a terminal; a disabled Progress does nothing,
    so the caller need not check. ``note`` prints a line of its own without garbling the bar.
    """

    WIDTH = 24

    def __init__(
        self,
        stream: TextIO,
        *,
        label: str,
        noun: str = "cases",
        enabled: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.noun = noun
        self.total: int | None = None
        if enabled is None:
            isatty = getattr(stream, "isatty", None)
            enabled = bool(isatty and isatty())
        self.enabled = enabled
        self._clock = clock
        self._started = clock()
        self._last_draw = float("-inf")
        self._shown = 0
        self._done = 0
        self._failed = 0

    def update(self, done: int, failed: int = 0, *, force: bool = False) -> None:
        self._done, self._failed = done, failed
        if not self.enabled:
            return
        now = self._clock()
        if not force and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        self._draw(self.render(now))

    def render(self, now: float | None = None) -> str:
        """The line, e.g. ``push [######......] 12/30 cases, 0 failed, 8.0/s, 2 s left``."""
        now = self._clock() if now is None else now
        elapsed = now - self._started
        rate = self._done / elapsed if elapsed >= 0.5 else 0.0  # too early to tell
        parts = [self.label]
        if self.total:
            filled = min(self.WIDTH, self.WIDTH * self._done // self.total)
            parts.append("[" + "#" * filled + "." * (self.WIDTH - filled) + "]")
            parts.append(f"{self._done}/{self.total} {self.noun},")
        else:
            parts.append(f"{self._done} {self.noun},")
        parts.append(f"{self._failed} failed" + (f", {rate:.1f}/s" if rate else ""))
        if self.total and rate > 0 and self._done < self.total:
            parts[-1] += f", {(self.total - self._done) / rate:.0f} s left"
        return " ".join(parts)

    def note(self, text: str) -> None:
        """Print ``text`` on a line of its own (the bar is redrawn after it)."""
        redraw = self.enabled and self._shown > 0
        if redraw:
            self._clear()
        self.stream.write(text + "\n")
        if redraw:
            self._draw(self.render())
        self.stream.flush()

    def finish(self) -> None:
        """Remove the bar (the summary is printed by the caller)."""
        if self.enabled and self._shown:
            self._clear()
            self.stream.flush()

    def _draw(self, line: str) -> None:
        pad = max(0, self._shown - len(line))
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()
        self._shown = len(line)

    def _clear(self) -> None:
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self._shown = 0


@dataclass
class PushSummary:
    """What a bulk push did, counted by case and by resource.

    ``read``: cases read from the input; ``skipped``: already in the journal (``--resume``);
    ``sent``: cases for which at least one transaction was sent; ``created`` / ``updated``: cases
    the server confirmed, by whether their Patient was new; ``failed``: cases in the dead letter
    (at any stage, the input included). ``resources_*`` count Bundle entries the server answered
    201 Created / 200 OK, ``transactions`` the transactions sent (a split case sends several).
    """

    read: int = 0
    skipped: int = 0
    sent: int = 0
    created: int = 0
    updated: int = 0
    failed: int = 0
    resources_created: int = 0
    resources_updated: int = 0
    resources_pruned: int = 0
    #: cases pushed again because their resources moved after they were confirmed (late writes)
    repushed: int = 0
    transactions: int = 0
    seconds: float = 0.0

    @property
    def confirmed(self) -> int:
        return self.created + self.updated

    @property
    def ok(self) -> bool:
        return self.failed == 0

    def line(self) -> str:
        rate = f" ({self.confirmed / self.seconds:.1f} cases/s)" if self.seconds > 0 else ""
        return (
            f"cases: {self.read} read, {self.sent} sent, {self.created} created, "
            f"{self.updated} updated, {self.failed} failed, {self.skipped} skipped "
            f"(already confirmed); resources: {self.resources_created} created, "
            f"{self.resources_updated} updated"
            + (f", {self.resources_pruned} pruned" if self.resources_pruned else "")
            + (
                f"; {self.repushed} case(s) pushed again after a late write"
                if self.repushed
                else ""
            )
            + f"; {self.transactions} transaction(s) "
            f"in {self.seconds:.2f} s{rate}"
        )


@dataclass
class PullSummary:
    """What a bulk pull did: ``found`` patients matched, ``written`` cases, ``failed`` patients
    in the dead letter, ``unmapped`` written cases with elements that could not be mapped,
    ``incomplete`` when the patient search gave fewer distinct patients than its total (the
    server stopped early, or listed a patient twice in place of another)."""

    found: int = 0
    written: int = 0
    failed: int = 0
    unmapped: int = 0
    incomplete: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.incomplete

    def line(self) -> str:
        rate = f" ({self.written / self.seconds:.1f} cases/s)" if self.seconds > 0 else ""
        text = (
            f"patients: {self.found} found, {self.written} written, {self.failed} failed, "
            f"{self.unmapped} with unmapped elements; in {self.seconds:.2f} s{rate}"
        )
        if self.incomplete:
            text += "; the patient search was INCOMPLETE (fewer patients than the server's total)"
        return text
