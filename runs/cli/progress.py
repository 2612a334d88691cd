"""The live progress bar of `l2l search`: children done and failed, best reward, batch mean and entropy."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from l2l.runs.cli.common import console
from l2l.runs.cli.formatting import fmt

if TYPE_CHECKING:
    from l2l.runs.store import Store
    from l2l.search_spaces import SearchSpace


class SearchProgress:
    """Counts a run's children from the store (a resumed run starts where it stopped) and follows its events."""

    def __init__(self, run_id: int, total: int, store: Store, quiet: bool, space: SearchSpace | None = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        from l2l.controllers.noise import Evaluations
        from l2l.runs.estimates import ArchKeys

        self.quiet = quiet
        counts = store.count_children(run_id)
        self.done, self.failed = counts["done"], counts["failed"]
        key = ArchKeys(space)
        done = [c for c in store.children(run_id) if c.status == "done" and c.reward is not None]
        self.evaluations = Evaluations.of((key(c.tokens), float(c.reward or 0.0)) for c in done)
        self.exact = space is not None and space.exact_rewards()
        self.best, self.entropic = self._best(), False
        # "best" is the best architecture's estimated mean reward over its evaluations (`l2l.runs.estimates`);
        # "batch" the mean the controller learned from, after its reward transform
        transform = (store.get_run(run_id).config.get("controller") or {}).get("reward_transform", "reward")
        batch = "batch" if transform == "reward" else f"batch ({transform})"
        self.progress = Progress(
            TextColumn("[bold]run {task.fields[run]}"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn("failed {task.fields[failed]}  best {task.fields[best]}  " + batch + " {task.fields[mean]}"),
            TextColumn("H {task.fields[entropy]}"),
            TimeElapsedColumn(),
            TextColumn("<"),
            TimeRemainingColumn(),
            console=console,
            disable=quiet,
        )
        self.task = self.progress.add_task(
            "search",
            total=total,
            completed=self.done + self.failed,
            run=run_id,
            failed=self.failed,
            best=fmt(self.best),
            mean="-",
            entropy="-",
        )

    def _best(self) -> float | None:
        top = self.evaluations.estimates(noise_sd=0.0 if self.exact else None, limit=1)
        return top[0].estimate if top else None

    def __enter__(self) -> SearchProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_event(self, event: Any) -> None:
        """The search's listener: a finished child moves the bar, a controller update its batch figures."""
        from l2l.runs.search import ChildEvent, NoticeEvent

        if isinstance(event, NoticeEvent):
            console.print(f"[yellow]note:[/] {escape(event.text)}", highlight=False)
        elif isinstance(event, ChildEvent):
            if event.status == "done":
                self.done += 1
                if event.reward is not None:
                    self.evaluations.add(event.arch, float(event.reward))
                    self.best = self._best()
            else:
                self.failed += 1
                if self.quiet:
                    return
                reason = (event.error or "").splitlines()[0] if event.error else "unknown"
                console.print(f"[red]child {event.number} failed:[/] {reason}", highlight=False)
            self.progress.update(self.task, completed=self.done + self.failed, failed=self.failed, best=fmt(self.best))
        else:
            self.entropic = self.entropic or bool(event.stats.entropy)  # evolution, TPE: no policy, no entropy
            entropy = fmt(event.stats.entropy, 2) if self.entropic else "-"
            self.progress.update(self.task, mean=fmt(event.stats.mean_reward), entropy=entropy)


class SharingProgress:
    """The progress bar of a weight-sharing search: epochs, the shared weights' loss, mean reward, entropy."""

    def __init__(self, run_id: int, epochs: int, store: Store, quiet: bool) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn
        from rich.text import Text

        started = time.monotonic()

        class Elapsed(ProgressColumn):  # Rich's stops when the epochs are done: the derive phase comes after them
            def render(self, task: Any) -> Text:
                seconds = int(time.monotonic() - started)
                return Text(f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}", style="progress.elapsed")

        epochs_done = store.epochs(run_id)  # a resumed run's: its bar starts where they left it
        done = len(epochs_done)
        self.progress = Progress(
            TextColumn("[bold]run {task.fields[run]} epochs"),
            BarColumn(bar_width=16),
            MofNCompleteColumn(),
            TextColumn(
                "shared loss {task.fields[loss]}  mean reward {task.fields[mean]}  H {task.fields[entropy]}"
                "{task.fields[phase]}"
            ),
            Elapsed(),
            console=console,
            disable=quiet,
        )
        last = epochs_done[-1] if epochs_done else None
        self.task = self.progress.add_task(
            "weight sharing",
            total=epochs,
            completed=done,
            run=run_id,
            loss=fmt(last.train_loss, 3) if last else "-",
            mean=fmt(last.mean_reward) if last else "-",
            entropy=fmt(last.entropy, 2) if last else "-",
            phase="",
        )
        self.derive_started = time.monotonic()

    def __enter__(self) -> SharingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def on_event(self, event: Any) -> None:
        """The search's listener: each finished epoch moves the bar; the derive phase is said when it starts."""
        from l2l.runs.weight_sharing import DeriveEvent

        if isinstance(event, DeriveEvent):  # the epochs' bar is full by now: the phase says how far scoring is
            if not event.scored:
                self.derive_started = time.monotonic()
            took = time.monotonic() - self.derive_started
            phase = f"  deriving: {event.scored}/{event.candidates} candidates scored on validation ({took:.0f} s)"
            self.progress.update(self.task, phase=phase)
            return
        self.progress.update(
            self.task,
            completed=event.epoch + 1,
            loss=fmt(event.train_loss, 3),
            mean=fmt(event.mean_reward),
            entropy=fmt(event.entropy, 2),
        )


def follow(lines: Callable[[], list[str]], running: Callable[[], bool], interval: float) -> None:
    """Show ``lines()`` until ``running()`` turns false, every ``interval`` seconds: redrawn in place on a
    terminal; printed again whenever they change where the output is a file or a pipe (a live display
    there would show nothing until the run ended). A store that stops answering (a server restarting) is
    said under the last lines read, and asked again, as the dashboard does; a run deleted meanwhile ends it."""
    from rich.live import Live
    from rich.text import Text

    from l2l.runs.store_records import RunNotFound, StoreError

    last: list[str] = []

    def poll() -> tuple[bool, list[str]]:
        nonlocal last
        try:
            still = running()  # first: lines read after it show at least the state it saw (the last ones, at the end)
            last = lines()
            return still, last
        except RunNotFound:
            raise
        except StoreError as exc:
            said = f"[yellow]the store does not answer: {escape(str(exc))}; asking again every {interval:g} s[/]"
            return True, [*last, said]

    if not console.is_terminal:
        shown: list[str] = []
        while True:
            still, now = poll()
            if now != shown:
                console.print(("\n" if shown else "") + "\n".join(now), highlight=False, soft_wrap=True)
                console.file.flush()
                shown = now
            if not still:
                return
            time.sleep(interval)
    still, now = poll()
    with Live(Text.from_markup("\n".join(now)), console=console, auto_refresh=False) as live:
        while still:
            time.sleep(interval)
            still, now = poll()
            live.update(Text.from_markup("\n".join(now)), refresh=True)
