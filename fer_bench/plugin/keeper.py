"""RunKeeper: what makes a run lose nothing. It journals each finished case (fer_bench.plugin.journal), turns a
signal into a clean stop that keeps every finished case and says what is missing (fer_bench.plugin.interrupt),
and lets ``--fer-resume`` run only the missing cases and write one results JSON with all of them
(fer_bench.plugin.resume).

The plugin's hooks call it; it holds the run's journal, the resumed run and the first signal.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from fer_bench.errors import FerBenchError
from fer_bench.plugin import storage
from fer_bench.plugin.interrupt import RunInterrupted, SignalGuard, drop_unnumbered_frames, say
from fer_bench.plugin.journal import Journal, choose_path, now
from fer_bench.plugin.resume import ResumeSource, identity_differences, load_source, run_identity


class RunKeeper:
    def __init__(self, config, fer):
        self.config = config
        self.fer = fer
        self.journal: Journal | None = None
        self.source: ResumeSource | None = None
        self.guard = SignalGuard(on_exit_now=self._exit_now)
        self.order: dict[str, int] = {}
        self.current: str | None = None
        self.mark = 0
        self.outcomes: dict[str, str] = {}
        self.finished: list[str] = []
        #: the cases this session runs (collected, not deselected), in order
        self.planned: list[str] = []
        self.incomplete: dict | None = None
        self._identity: dict | None = None

    # ------------------------------------------------------------------------------------------------ setup
    def setup(self, *, json_path: Path | None, storage_folder: Path | None) -> None:
        """At configure: the signal handlers, the journal's place, and the run to resume (refused in one line
        when it is another run)."""
        options = self.fer.options
        self.fer.undo.append(self.guard.install())
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        path = choose_path(explicit=options.journal, json_path=json_path, storage_folder=storage_folder,
                           tag=f"{stamp}-{os.getpid()}")
        if path is not None and (self.fer.launch is None or self.fer.launch.rank == 0):  # rank 0 alone writes
            self.journal = Journal(path)
        if options.resume is None:
            return
        try:
            self.source = load_source(options.resume)
        except FerBenchError as exc:
            raise pytest.UsageError(f"--fer-resume {options.resume}: {exc}") from None
        differences = identity_differences(self.source.identity, self.identity())
        if differences:
            raise pytest.UsageError(f"--fer-resume {options.resume}: refused, another run: "
                                    + "; ".join(differences))

    def identity(self) -> dict:
        if self._identity is None:
            commit = None
            if self.config.pluginmanager.hasplugin("benchmark"):
                commit = self.config.hook.pytest_benchmark_generate_commit_info(config=self.config)
            self._identity = run_identity(fingerprint=self.fer.get_fingerprint(), options=self.fer.options,
                                          commit=commit)
        return self._identity

    # ------------------------------------------------------------------------------------------------ collection
    def leave_out_done(self, items: list) -> None:
        """Remember the collection order; under --fer-resume deselect the cases the resumed run finished."""
        self.order = {item.nodeid: i for i, item in enumerate(items)}
        if self.source is None:
            return
        done = self.source.done
        kept = [item for item in items if item.nodeid not in done]
        dropped = [item for item in items if item.nodeid in done]
        if dropped:
            self.config.hook.pytest_deselected(items=dropped)
            items[:] = kept

    # ------------------------------------------------------------------------------------------------ each case
    def case_started(self, nodeid: str) -> None:
        self.current = nodeid
        bs = storage.benchmark_session(self.config)
        self.mark = len(getattr(bs, "benchmarks", None) or ())

    def case_report(self, report) -> None:
        before = self.outcomes.get(report.nodeid)
        if report.failed:
            self.outcomes[report.nodeid] = "failed"
        elif report.skipped and before != "failed":
            self.outcomes[report.nodeid] = "skipped"
        elif before is None:
            self.outcomes[report.nodeid] = "passed"

    def case_finished(self, nodeid: str) -> None:
        """The case is over (its teardown too): its results go to the journal, on disk before the next case."""
        self.current = None
        self.finished.append(nodeid)
        if self.journal is None:
            return
        bs = storage.benchmark_session(self.config)
        results = [b.as_dict(include_data=True) for b in (getattr(bs, "benchmarks", None) or ())[self.mark:]
                   if not getattr(b, "has_error", False)]
        self._start_journal()
        self.journal.append({"nodeid": nodeid, "outcome": self.outcomes.get(nodeid, "passed"),
                             "benchmarks": results, "finished": now()})

    def _start_journal(self) -> None:
        if self.journal is not None and not self.journal.started:
            header = {"started": now(), "identity": self.identity(),
                      "interruptions": self.source.interruptions if self.source else [],
                      "resumed_from": str(self.source.path) if self.source else None}
            self.journal.start(header, list(self.source.cases) if self.source else [])

    # ------------------------------------------------------------------------------------------------ the end
    @pytest.hookimpl(tryfirst=True)
    def pytest_keyboard_interrupt(self, excinfo) -> None:
        """Ctrl-C, SIGTERM or SIGUSR1 (fer_bench.plugin.interrupt), or pytest.exit (registered as a plugin: the
        hook gets no config)."""
        self.interrupted(excinfo)

    def interrupted(self, excinfo) -> None:
        """pytest caught the interruption: keep what finished, drop the partial case, record what is missing."""
        drop_unnumbered_frames(excinfo)
        if self.incomplete is not None:
            return
        signal_record = self.guard.received or {}
        what = signal_record.get("signal") or ("pytest.exit" if not isinstance(excinfo.value, KeyboardInterrupt)
                                               else "KeyboardInterrupt")
        bs = storage.benchmark_session(self.config)
        if self.current is not None and bs is not None:
            storage.drop_results_since(bs, self.mark)
        finished = set(self.finished)
        missing = []
        for nodeid in self.planned:
            if nodeid in finished:
                continue
            why = (f"interrupted by {what} while it ran" if nodeid == self.current
                   else f"not started: {what} stopped the run")
            missing.append({"case": nodeid, "why": why})
        reason = str(excinfo.value) if not isinstance(excinfo.value, KeyboardInterrupt) else None
        self.incomplete = {"signal": what, "at": signal_record.get("at") or now(), "during": self.current,
                           "finished": len(finished) + (len(self.source.done) if self.source else 0),
                           "missing": missing, **({"reason": reason} if reason else {})}
        if bs is not None:
            storage.stop_saving(bs)  # stored runs are complete runs; the JSON and the journal keep this one
        if self.journal is not None and (self.journal.started or self.source is not None):
            self._start_journal()
            record = {k: v for k, v in self.incomplete.items() if k != "missing"}
            self.journal.append({"interrupted": {**record, "missing": len(missing)}})

    def loop_ended(self, session) -> None:
        """The test loop is over. A run that stopped early without a signal (-x, --maxfail, a broken DDP world)
        is incomplete too: the same record, the same resume."""
        stop = session.shouldfail or session.shouldstop
        if self.incomplete is not None or not stop:
            return
        finished = set(self.finished)
        missing = [{"case": nodeid, "why": f"not started: {stop}"} for nodeid in self.planned
                   if nodeid not in finished]
        if not missing:
            return
        self.incomplete = {"signal": None, "reason": str(stop), "at": now(), "during": None,
                           "finished": len(finished) + (len(self.source.done) if self.source else 0),
                           "missing": missing}
        bs = storage.benchmark_session(self.config)
        if bs is not None:
            storage.stop_saving(bs)
        if self.journal is not None and self.journal.started:
            self.journal.append({"interrupted": {**{k: v for k, v in self.incomplete.items() if k != "missing"},
                                                 "missing": len(missing)}})

    def run_facts(self) -> dict:
        """What the results JSON's ``fer_bench.run`` says of the run's identity, resumption and interruptions."""
        facts: dict[str, Any] = {}
        if self._identity is not None or self.journal is not None or self.source is not None:
            facts["identity"] = self.identity()
        if self.source is not None:
            facts["resumed_from"] = str(self.source.path)
            facts["interruptions"] = [{**i, "missing": len(i["missing"])} if isinstance(i.get("missing"), list)
                                      else dict(i) for i in self.source.interruptions]
        if self.incomplete is not None:
            facts["incomplete"] = self.incomplete
        return facts

    def merge_results(self, output_json: dict) -> None:
        """The resumed run's results join this run's, each case once, in the order the cases were collected."""
        if self.source is None:
            return
        current = output_json.setdefault("benchmarks", [])
        have = {b.get("fullname") for b in current}
        earlier = [dict(b) for b in self.source.results() if b.get("fullname") not in have]
        if current and not any("data" in (b.get("stats") or {}) for b in current):
            for bench in earlier:  # a save without --benchmark-save-data keeps no rounds
                bench["stats"] = {k: v for k, v in (bench.get("stats") or {}).items() if k != "data"}
        last = len(self.order)
        merged = sorted(current + earlier, key=lambda b: self.order.get(b.get("fullname"), last))
        current[:] = merged

    def finish(self, session, exitstatus) -> None:
        """After pytest-benchmark wrote its files: a resumed run that measured nothing new still writes its JSON; a
        complete run removes its journal, an interrupted one says what it kept and how to go on."""
        bs = storage.benchmark_session(self.config)
        self.guard.finishing = True
        if self.incomplete is None and self.source is not None and bs is not None and not bs.benchmarks \
                and self.source.results():
            storage.save_without_new_cases(self.config, bs)
        if self.journal is None:
            return
        if self.incomplete is None:
            if self.journal.started:
                self.journal.remove()  # the results file holds every case
            return
        self.journal.close()

    def summary_lines(self) -> list[str]:
        if self.incomplete is None:
            if self.source is not None:
                return [f"fer_bench: resumed {self.source.path}: {_cases(len(self.source.done))} kept from it, "
                        f"{len(self.finished)} run now"]
            return []
        inc = self.incomplete
        json_path = storage.benchmark_json_path(self.config)
        kept = [str(p) for p in ([json_path] if json_path and json_path.exists() else [])]
        if self.journal is not None and self.journal.started:
            kept.append(str(self.journal.path))
        resume_from = (self.journal.path if self.journal is not None and self.journal.started
                       else json_path if kept else None)
        lines = [f"fer_bench: run {'interrupted by ' + inc['signal'] if inc.get('signal') else 'stopped early'}: "
                 f"{_cases(inc['finished'])} finished, "
                 f"{len(inc['missing'])} missing" + (f" ({inc['during'].split('::')[-1]} was running)"
                                                      if inc.get("during") else "")
                 + (f"; kept in {' and '.join(kept)}" if kept else "; nothing had finished, nothing is kept")]
        if storage.storage_in_use(self.config) and self.config.option.benchmark_autosave is not None:
            lines.append("fer_bench: not saved to the storage folder: it keeps complete runs; the resumed run is "
                         "saved there")
        if resume_from is not None:
            lines.append(f"fer_bench: to go on: the same command with --fer-resume {resume_from}")
        return lines

    def _exit_now(self, name: str) -> None:
        where = f"; the finished cases are in {self.journal.path}" if self.journal and self.journal.started else ""
        say(f"fer_bench: second {name}: exiting now{where}")


def _cases(n: int) -> str:
    return f"{n} case{'' if n == 1 else 's'}"


__all__ = ["RunInterrupted", "RunKeeper"]
