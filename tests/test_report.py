"""Tests of `fer-bench report` (fer_bench.results.report): the page's sections, the gate in it, bad input, its speed
and size over 50 runs, and the page of the committed runs rendered in headless Chromium."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from fer_bench.cli import main
from fer_bench.results.compare import create_view
from fer_bench.results.runs import load_results
from result_factory import (
    create_batch_cases,
    create_fingerprint,
    create_precision_cases,
    create_run,
    create_scaling_step,
    create_train_cases,
    create_workers_cases,
    write_fleet,
    write_run,
)

pytest.importorskip("matplotlib", reason="the plots extra (matplotlib) is not installed")

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
SLOW = create_fingerprint("laptop-i5-4c", {"cpu": {"brand": "Intel i5", "cores": 4}, "gpus": []})
FAST = create_fingerprint("hpc-epyc-64c__h100-x1", {"cpu": {"brand": "AMD EPYC", "cores": 64},
                                                    "gpus": [{"name": "H100"}]})
NO_BROWSER = "chromium not installed: sh scripts/install_browser.sh installs it (as root)"


class _Page(HTMLParser):
    """Per section (by id): the <svg> and <table> elements inside it, and every src/href-like attribute."""

    URL_ATTRIBUTES = ("src", "href", "xlink:href", "srcset", "poster", "action", "formaction", "data", "background",
                      "ping")

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict] = {}
        self.current: str | None = None
        self.depth = 0
        self.urls: list[tuple[str, str, str]] = []
        self.tags: dict[str, int] = {}
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags[tag] = self.tags.get(tag, 0) + 1
        for name, value in attrs.items():
            if name in self.URL_ATTRIBUTES and value is not None:
                self.urls.append((tag, name, value))
            if name == "style" and value:
                self.styles.append(value)
        if tag == "style":
            self._in_style = True
        if tag == "section":
            self.current = attrs.get("id")
            self.sections[self.current] = {"attrs": attrs, "svg": 0, "table": 0, "text": []}
            self.depth = 1
        elif self.current is not None:
            if tag == "section":
                self.depth += 1
            if tag in ("svg", "table"):
                self.sections[self.current][tag] += 1

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False
        if tag == "section" and self.current is not None:
            self.current = None

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)
        if self.current is not None:
            self.sections[self.current]["text"].append(data)


def _parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _external(page: _Page) -> list:
    """References that would leave the page: http(s), protocol-relative or any other scheme but data: and #."""
    bad = [(t, n, v) for t, n, v in page.urls
           if re.match(r"^\s*(https?:|//|ftp:|file:)", v, re.I) or ("://" in v and not v.startswith("data:"))]
    for style in page.styles:
        bad += [("style", "url", u) for u in re.findall(r"url\(\s*['\"]?([^)'\"]+)", style) if not u.startswith("#")]
        bad += [("style", "@import", s) for s in re.findall(r"@import[^;]*", style)]
        bad += [("style", "@font-face", s) for s in re.findall(r"@font-face", style)]
    return bad


def _report(capsys, *argv) -> tuple[int, str, str]:
    status = main(["report", *map(str, argv)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture
def two_machines(tmp_path) -> Path:
    """A laptop and an HPC node (its CPU 5x, its GPU 50x faster), with train, workers, batch and precision cases."""
    write_run(tmp_path / "runs" / "laptop" / "run.json", create_run(
        create_train_cases(0.010, seed=1, sigma=0.01) + create_workers_cases(seed=1), SLOW))
    hpc = (create_train_cases(0.010, factor=0.2, seed=2, sigma=0.01)
           + create_train_cases(0.010, factor=0.02, device="cuda", seed=3, sigma=0.01, models=("simple_cnn",))
           + create_workers_cases(seed=2, speed=3.0) + create_batch_cases(seed=2) + create_precision_cases(seed=2))
    write_run(tmp_path / "runs" / "hpc" / "run.json", create_run(hpc, FAST))
    return tmp_path / "runs"


# ----------------------------------------------------------------------------------------------- the page


def test_report_holds_machines_groups_and_views(two_machines, tmp_path, capsys):
    out = tmp_path / "report.html"
    status, stdout, err = _report(capsys, two_machines, "-o", out, "--title", "Laptop against HPC")
    assert status == 0 and stdout == "" and f"wrote {out}" in err
    text = out.read_text()
    page = _parse(text)
    assert "<title>Laptop against HPC</title>" in text
    # machines side by side: label, slug, identity hash, stack, runs, cases; the identity differences under them
    machines = "".join(page.sections["machines"]["text"])
    runs = load_results([two_machines])
    for run in runs:
        assert run.machine.slug in machines and run.machine.identity_hash in machines
    assert "cpu.brand" in machines and "AMD EPYC" in machines and "Intel i5" in machines
    assert "2026-01-01 12:00 UTC: run.json, 12 cases" in machines and "run.json, 21 cases" in machines
    # a section per group, each with its chart and table; every other view with data likewise
    for group in ("train_step", "epoch", "forward"):
        section = page.sections[f"group-{group}"]
        assert (section["svg"], section["table"]) == (1, 1), group
    for view in ("workers", "batch", "precision"):
        section = page.sections[f"view-{view}"]
        assert (section["svg"], section["table"]) == (1, 1), view
        assert section["attrs"]["data-charts"] == "1"
    assert "view-scaling" not in page.sections and "views-without-data" in page.sections
    assert "no multi-GPU results" in "".join(page.sections["views-without-data"]["text"])
    # the group's notes beside it: the baseline line, not the machine listing (shown once, above)
    train = "".join(page.sections["group-train_step"]["text"])
    assert "Baseline: laptop-i5-4c/cpu" in train and "Identity differences between the machines" not in train
    # throughput bars with the speedup beside them, in images/s, in the chart's own text
    svg = re.search(r'<section id="group-train_step".*?</section>', text, re.S).group(0)
    assert "throughput (images/s)" in svg and re.search(r">(4\.\d\dx|5\.\d\dx)<", svg)
    assert not _external(page)
    assert page.tags.get("script", 0) == 0 and page.tags.get("link", 0) == 0 and page.tags.get("img", 0) == 0


def test_error_bars_come_from_the_quartiles(two_machines, tmp_path):
    """The group chart's error bars: the case's q1/q3 (stats) as throughput, samples over the quartile time."""
    from fer_bench.results.views import platforms

    runs = load_results([two_machines])
    view = create_view("platforms", runs, groups=["train_step"])
    frame = platforms._with_quartiles(view.records, platforms._stats_index(runs))
    cases = frame[frame["kind"] == "case"]
    assert cases["q1_ms"].notna().all() and cases["q3_ms"].notna().all()
    run = runs[0]
    case = next(c for c in run.cases if c.group == "train_step")
    row = cases[(cases["run"] == str(run.path)) & (cases["median_ms"] == case.median_s * 1e3)].iloc[0]
    assert row["q1_ms"] == pytest.approx(case.stats["q1"] * 1e3) and row["q3_ms"] == pytest.approx(
        case.stats["q3"] * 1e3)


def test_noisy_cases_are_noted(tmp_path, capsys):
    noisy = create_train_cases(0.010, seed=4, sigma=0.25)  # an IQR near a third of the median
    write_run(tmp_path / "runs" / "a.json", create_run(noisy, SLOW))
    write_run(tmp_path / "runs" / "b.json", create_run(create_train_cases(0.010, factor=0.5, seed=5), FAST))
    status, _, _ = _report(capsys, tmp_path / "runs", "-o", tmp_path / "r.html")
    text = "".join(_parse((tmp_path / "r.html").read_text()).sections["group-train_step"]["text"])
    assert status == 0 and "Noisy: 4 cases with an IQR over 10% of the median (rel_iqr > 0.1)" in text


def test_platform_names_and_baseline(two_machines, tmp_path, capsys):
    out = tmp_path / "r.html"
    status, _, _ = _report(capsys, two_machines, "-o", out, "--platform-name", "laptop-i5-4c=my laptop",
                           "--baseline", "hpc-epyc-64c__h100-x1/cpu", "--group", "train_step", "forward")
    page = _parse(out.read_text())
    assert status == 0 and {"group-train_step", "group-forward"} <= set(page.sections)
    assert "group-epoch" not in page.sections
    text = "".join(page.sections["group-train_step"]["text"])
    assert "my laptop/cpu" in text and "Baseline: hpc-epyc-64c__h100-x1/cpu (--baseline)" in text
    # a group the --baseline platform did not run (forward: on the GPU only) falls back to the view's own choice,
    # and says so
    forward = "".join(page.sections["group-forward"]["text"])
    assert "ran no case of this group" in forward and "Baseline: hpc-epyc-64c__h100-x1/cuda" in forward


def test_gate_in_the_report(tmp_path, capsys):
    """Two baseline runs; a current run whose resnet18 cases are 30% slower: regressions first, exit status 1 in
    the page, the report's own status 0."""
    for seed in (1, 2):
        write_run(tmp_path / "base" / f"b{seed}.json", create_run(create_train_cases(0.010, seed=seed, sigma=0.01),
                                                                   SLOW, when=f"2026-01-0{seed}T12:00:00+00:00"))
    current = create_train_cases(0.010, seed=3, sigma=0.01)
    slower = create_train_cases(0.010, factor=1.3, seed=3, sigma=0.01)
    current[:2] = slower[:2]  # resnet18 at both batch sizes
    write_run(tmp_path / "cur" / "c.json", create_run(current, SLOW, when="2026-01-05T12:00:00+00:00"))
    out = tmp_path / "r.html"
    status, _, err = _report(capsys, tmp_path / "cur", "-o", out, "--gate", tmp_path / "base")
    assert status == 0 and "gate: exit status 1" in err
    text = out.read_text()
    page = _parse(text)
    gate = page.sections["gate"]
    assert (gate["svg"], gate["table"]) == (1, 1)
    assert 'data-exit-status="1"' in text and "-&gt; exit 1" in text
    rows = re.findall(r"<tr><td>(test_train_step\[[^<]*)</td><td>(\w[\w ]*)</td>", text)
    assert [s for _, s in rows[:2]] == ["regression", "regression"] and all("resnet18" in c for c, _ in rows[:2])
    assert {s for _, s in rows[2:]} <= {"unchanged", "inconclusive"}
    svg = re.search(r'<section id="gate".*?</section>', text, re.S).group(0)
    assert "threshold \u00b15%" in svg and ">regression<" in svg


def test_gate_of_several_current_machines_is_bad_input(two_machines, tmp_path, capsys):
    write_run(tmp_path / "base" / "b.json", create_run(create_train_cases(0.010, seed=7), SLOW))
    out = tmp_path / "r.html"
    status, _, err = _report(capsys, two_machines, "-o", out, "--gate", tmp_path / "base")
    assert status == 3 and err.startswith("fer-bench report: error: ") and "machines" in err
    assert not out.exists()


# ----------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv, message", [
    (["{tmp}/missing"], "no such file or folder"),
    (["{tmp}/bad.json"], "malformed or truncated JSON"),
    (["{runs}", "--baseline", "nobody"], "--baseline nobody"),
    (["{runs}", "--group", "nothing"], "--group nothing"),
    (["{runs}", "--platform-name", "laptop"], "--platform-name"),
])
def test_bad_input_is_one_line_and_exit_3(two_machines, tmp_path, capsys, argv, message):
    (tmp_path / "bad.json").write_text('{"benchmarks": [')
    out = tmp_path / "report.html"
    out.write_text("the previous report")
    argv = [a.format(tmp=tmp_path, runs=two_machines) for a in argv]
    status, stdout, err = _report(capsys, *argv, "-o", out)
    assert status == 3 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("fer-bench report: error: ") and message in err
    assert "Traceback" not in err
    assert out.read_text() == "the previous report"


def test_a_failed_write_leaves_the_old_report(two_machines, tmp_path, capsys, monkeypatch):
    """Atomic: the page goes to a temporary file that is fsynced, then renamed; a failure leaves the old file and
    no temporary one."""
    out = tmp_path / "out" / "report.html"
    out.parent.mkdir()
    out.write_text("the previous report")

    def broken(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken)
    status, _, err = _report(capsys, two_machines, "-o", out)
    assert status == 3 and "cannot write: No space left on device" in err
    assert out.read_text() == "the previous report" and sorted(p.name for p in out.parent.iterdir()) == [
        "report.html"]


def test_without_matplotlib_is_bad_input(two_machines, tmp_path, capsys, monkeypatch):
    import sys

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    status, _, err = _report(capsys, two_machines, "-o", tmp_path / "r.html")
    assert status == 3 and "fer-bench report needs matplotlib: pip install 'fer_bench[plots]'" in err
    assert not (tmp_path / "r.html").exists()


def test_bad_option_is_exit_3(two_machines, tmp_path):
    assert main(["report", str(two_machines), "-o", str(tmp_path / "r.html"), "--threshold", "lots"]) == 3


# ----------------------------------------------------------------------------------------------- large inputs


@pytest.mark.slow
def test_fifty_runs_render_fast_and_small(tmp_path, capsys):
    """50 runs (10 machines, 5 runs each: a stored history) with train, workers, batch and precision cases: the
    report is written in under 5 s and is under 5 MB. (Interpreter start and imports not counted.)"""
    import matplotlib.figure  # noqa: F401  (imports are the process's start, not the report's rendering)

    for i in range(50):
        m = i % 10
        fp = create_fingerprint(f"machine-{m:02d}", {"cpu": {"brand": f"CPU {m}", "cores": 2 + m}, "gpus": []})
        speed = 1 + 0.15 * m
        cases = (create_train_cases(0.01, factor=1 / speed, seed=i) + create_workers_cases(seed=i, speed=speed)
                 + create_batch_cases(seed=i) + create_precision_cases(seed=i))
        write_run(tmp_path / "runs" / f"machine-{m:02d}" / f"run{i:02d}.json",
                  create_run(cases, fp, when=f"2026-01-{1 + i // 24:02d}T{i % 24:02d}:00:00+00:00"))
    out = tmp_path / "report.html"
    started = time.perf_counter()
    status, _, err = _report(capsys, tmp_path / "runs", "-o", out)
    seconds = time.perf_counter() - started
    size = out.stat().st_size
    print(f"50 runs: {seconds:.2f} s, {size / 1e6:.2f} MB ({err.strip()})")
    assert status == 0
    assert seconds < 5.0, f"the report of 50 runs took {seconds:.1f} s"
    assert size < 5_000_000, f"the report of 50 runs is {size / 1e6:.1f} MB"
    page = _parse(out.read_text())
    assert len([s for s in page.sections if s.startswith("group-")]) == 3
    assert all(page.sections[s]["svg"] == 1 for s in page.sections if s.startswith(("group-", "view-")))


# ----------------------------------------------------------------------------------------------- in a browser


def _browser() -> str | None:
    names = [os.environ.get("FER_BENCH_CHROMIUM") or "", "chromium", "chromium-browser", "google-chrome-stable",
             "google-chrome", "chrome"]
    return next((shutil.which(n) for n in names if n and shutil.which(n)), None)


def _chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    """Headless Chromium with the network off (every host unresolvable, every request sent to a dead proxy) and
    its console logged to stderr."""
    cmd = [browser, "--headless=new", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
           "--disable-background-networking", "--disable-sync", "--disable-dev-shm-usage",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
           "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
           *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _console_errors(stderr: str) -> list[str]:
    """The page's console output (Chromium logs it as INFO:CONSOLE) and uncaught errors; the page has no script,
    so any line is a fault. Chromium's own D-Bus and GPU chatter is not the page's."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _install_browser(system_install) -> str:
    """scripts/install_browser.sh's Chromium, where this test may install it (CI=true, FER_BENCH_SYSTEM_INSTALL=1);
    otherwise, or where the install fails, the test skips with the reason."""
    system_install("apt-get install chromium, by scripts/install_browser.sh")
    if os.geteuid() != 0:
        pytest.skip(NO_BROWSER)
    done = subprocess.run(["sh", str(REPO / "scripts" / "install_browser.sh")], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900)
    browser = _browser()
    if browser is None:
        pytest.skip(f"{NO_BROWSER}; it failed here (exit {done.returncode}): {done.stderr.strip()[-500:]}")
    return browser


@pytest.mark.slow
def test_report_of_the_committed_runs_in_a_browser(tmp_path, capsys, system_install):
    browser = _browser() or _install_browser(system_install)
    out = tmp_path / "report.html"
    status, _, err = _report(capsys, RESULTS, "-o", out)
    assert status == 0, err
    text = out.read_text()
    static = _parse(text)
    assert not _external(static), _external(static)
    assert static.tags.get("script", 0) == 0 and static.tags.get("link", 0) == 0

    dom = _chromium(browser, tmp_path / "profile", "--dump-dom", out.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert not _console_errors(dom.stderr), _console_errors(dom.stderr)
    page = _parse(dom.stdout)
    assert not _external(page)

    runs = load_results([RESULTS])
    groups = sorted({c.group or "" for r in runs for c in r.cases})
    expected = {"machines", *(f"group-{g}" for g in groups),
                *(f"view-{v}" for v in ("workers", "precision", "batch", "convergence", "paper"))}
    assert expected <= set(page.sections), expected - set(page.sections)
    for name, section in page.sections.items():
        charts = int(section["attrs"]["data-charts"])
        assert section["svg"] == charts, name  # every chart the page declares is in the rendered DOM
        if name.startswith(("group-", "view-")):
            assert charts >= 1 and section["table"] >= 1, name
    assert page.sections["machines"]["table"] >= 3  # the machines, their identity and stack differences
    for run in runs:
        assert run.machine.identity_hash in "".join(page.sections["machines"]["text"])

    shot = tmp_path / "report.png"
    result = _chromium(browser, tmp_path / "profile", "--hide-scrollbars", "--window-size=1280,2400",
                       f"--screenshot={shot}", out.as_uri())
    assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
    assert not _console_errors(result.stderr)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 2400)
        colours = image.convert("RGB").resize((64, 120)).getcolors(64 * 120)
        assert colours is not None and len(colours) > 50  # charts and tables drawn, not a blank page


@pytest.mark.slow
def test_report_of_a_fleet_in_a_browser(tmp_path, capsys, system_install):
    """Four nodes of one machine, one 15% slow, and a DDP run over two hosts: the nodes section (its chart with the
    slow node marked, its table, the verdicts) and the stragglers section render in Chromium."""
    browser = _browser() or _install_browser(system_install)
    fleet = write_fleet(tmp_path / "runs" / "fleet", FAST, slow={"node-3": 0.15})
    ddp = create_scaling_step(2, 0.050, rank_skew=1.1)
    for entry, host in zip(ddp["extra_info"]["per_rank"], ("node-1", "node-2")):
        entry["host"] = host
    write_run(fleet / "ddp.json", create_run([ddp], FAST, run={"node": "node-1"}))
    out = tmp_path / "report.html"
    status, _, err = _report(capsys, tmp_path / "runs", "-o", out)
    assert status == 0, err
    dom = _chromium(browser, tmp_path / "profile", "--dump-dom", out.as_uri())
    assert dom.returncode == 0 and not _console_errors(dom.stderr), dom.stderr[-2000:]
    page = _parse(dom.stdout)
    for name in ("view-nodes", "view-stragglers"):
        section = page.sections[name]
        assert section["svg"] == int(section["attrs"]["data-charts"]) == 1 and section["table"] == 1, name
    nodes = "".join(page.sections["view-nodes"]["text"])
    assert "slow, outside the noise" in nodes and re.search(r"node-3: slow: 6 of 6 cases \+1\d\.\d%", nodes)
    assert "node-1: ok" in nodes and "node-2: ok" in nodes and "node-4: ok" in nodes
    stragglers = "".join(page.sections["view-stragglers"]["text"])
    assert "slowest rank 1 on node-2" in stragglers
