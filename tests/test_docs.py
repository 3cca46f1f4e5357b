"""scripts/docs.py, the generator of the README's and docs/'s generated blocks: its parser and replacer on small
strings, and `python3 dev.py docs --check` on the committed files (run in this process)."""

from __future__ import annotations

import importlib.util
import io
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _docs():
    if "fer_docs_script" not in sys.modules:
        spec = importlib.util.spec_from_file_location("fer_docs_script", ROOT / "scripts" / "docs.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules["fer_docs_script"] = module
        spec.loader.exec_module(module)
    return sys.modules["fer_docs_script"]


TEXT = """# Title

<!-- generated: toc -->
old toc
<!-- end generated -->

## First `one`

<!-- generated: cmd: fer-bench --help -->
```text
old help
```
<!-- end generated -->

### Under it

```sh
## not a heading: inside a fence
```

## Second, with punctuation!
<!-- generated: walkthrough -->
<!-- end generated -->
"""


def test_parse_blocks_finds_each_block_with_its_kind_argument_and_line():
    docs = _docs()
    blocks = docs.parse_blocks(TEXT)
    assert [(b.kind, b.argument, b.line) for b in blocks] == [
        ("toc", "", 3), ("cmd", "fer-bench --help", 9), ("walkthrough", "", 22)]
    assert blocks[0].body == "old toc\n"
    assert blocks[1].body == "```text\nold help\n```\n"
    assert blocks[2].body == ""


@pytest.mark.parametrize("text, message", [
    ("<!-- generated: toc -->\nno end\n", "has no <!-- end generated -->"),
    ("<!-- generated: toc -->\n<!-- generated: toc -->\n<!-- end generated -->\n", "another block inside it"),
    ("<!-- generated: nonsense -->\n<!-- end generated -->\n", "unknown kind 'nonsense'"),
])
def test_parse_blocks_names_the_file_line_and_fault(text, message):
    docs = _docs()
    with pytest.raises(docs.DocsError, match=message) as info:
        docs.parse_blocks("intro\n" + text, "X.md")
    assert str(info.value).startswith("X.md:2: ")


def test_replace_blocks_replaces_bodies_and_keeps_the_rest():
    docs = _docs()
    out = docs.replace_blocks(TEXT, lambda b: {"cmd": "new help", "walkthrough": None}.get(b.kind, "T\n"))
    assert "<!-- generated: toc -->\nT\n<!-- end generated -->" in out
    assert "<!-- generated: cmd: fer-bench --help -->\nnew help\n<!-- end generated -->" in out  # newline added
    assert "<!-- generated: walkthrough -->\n<!-- end generated -->" in out  # None keeps the body
    assert out.replace("T\n", "old toc\n").replace("new help\n", "```text\nold help\n```\n") == TEXT


def test_toc_lists_the_headings_outside_fences_with_githubs_anchors():
    docs = _docs()
    assert docs.render_toc(TEXT) == ("- [First one](#first-one)\n"
                                     "  - [Under it](#under-it)\n"
                                     "- [Second, with punctuation!](#second-with-punctuation)\n")


def test_preset_lines_are_parsed_into_counts():
    docs = _docs()
    line = ("preset default: 136 cases, 33 run here (dataloader 6/18, time_to_accuracy 1/4); budget 10 min; expected "
            "time: no stored run of this machine in results/x/ yet; 20 cpu cases of amp_bf16 left out (emulated here)")
    parsed = docs.parse_preset_lines("noise\n" + line + "\n")
    assert parsed == {"default": {"cases": 136, "run": 33, "budget": "10 min", "left_out": {"amp_bf16": 20},
                                  "per": {"dataloader": (6, 18), "time_to_accuracy": (1, 4)}}}


def test_options_table_has_a_row_for_every_fer_option_pytest_lists():
    docs = _docs()
    rows = docs.render_options_table().splitlines()[2:]
    in_table = [re.match(r"^\| `(--fer-[\w-]+)", row)[1] for row in rows]
    in_help = re.findall(r"^  (--fer-[\w-]+)", docs.render_pytest_help(), re.M)
    assert sorted(in_table) == sorted(in_help) and len(in_help) > 20
    assert any(row.startswith("| `--fer-batch-sizes LIST` |") and "quick: `32`" in row for row in rows)


def test_check_reports_a_stale_block_with_a_diff(tmp_path):
    docs = _docs()
    page = tmp_path / "page.md"
    page.write_text("# P\n\n<!-- generated: toc -->\n- [Gone](#gone)\n<!-- end generated -->\n\n## Here\n")
    out = io.StringIO()
    assert docs.check([page], out=out) == 1
    report = out.getvalue()
    assert "page.md:3: generated block 'toc' differs" in report
    assert "-- [Gone](#gone)" in report and "+- [Here](#here)" in report
    docs.regenerate([page])
    assert docs.check([page], out=io.StringIO()) == 0


def test_the_committed_docs_are_what_the_code_prints_now():
    """`python3 dev.py docs --check`, in process: every checked block of README.md and docs/*.md."""
    out = io.StringIO()
    code = _docs().check(out=out)
    assert code == 0, out.getvalue()
