"""`livo screenshot`: the page it opens in headless Chromium, and the screenshots kept in docs/."""

import os
import stat
from pathlib import Path

import pytest
from PIL import Image

from livo_core import infra

DOCS = Path(__file__).resolve().parents[2] / "docs"
FAKE_CHROMIUM = """#!/bin/sh
# records its arguments; writes the PNG it is asked for (or nothing, when told to fail)
echo "$@" > "$(dirname "$0")/args.txt"
[ -n "$WRITE_NOTHING" ] && exit 0
for arg in "$@"; do case "$arg" in --screenshot=*) cp "$PNG" "${arg#--screenshot=}";; esac; done
"""


@pytest.fixture
def chromium(tmp_path, monkeypatch):
    """A stand-in `chromium` on PATH: the real one is exercised by the docs/ screenshots below."""
    browser = tmp_path / "bin" / "chromium"
    browser.parent.mkdir()
    browser.write_text(FAKE_CHROMIUM)
    browser.chmod(browser.stat().st_mode | stat.S_IEXEC)
    Image.new("RGB", (8, 8)).save(tmp_path / "page.png")
    monkeypatch.setenv("PATH", f"{browser.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PNG", str(tmp_path / "page.png"))
    return browser.parent / "args.txt"


def test_a_page_is_opened_headless_at_the_size_asked_and_saved(chromium, tmp_path):
    out = infra.screenshot_page("http://127.0.0.1:1/runs/flow-run/abc", tmp_path / "shots" / "graph.png", 1400, 900)
    args = chromium.read_text().split()
    assert "--headless" in args and "--window-size=1400,900" in args and args[-1].endswith("/runs/flow-run/abc")
    assert out == (tmp_path / "shots" / "graph.png").resolve() and Image.open(out).size == (8, 8)


def test_no_screenshot_written_is_an_error(chromium, tmp_path, monkeypatch):
    monkeypatch.setenv("WRITE_NOTHING", "1")
    with pytest.raises(RuntimeError, match="chromium wrote no screenshot"):
        infra.screenshot_page("http://127.0.0.1:1/x", tmp_path / "x.png")


@pytest.mark.parametrize("name", ["livo-flow-run.png", "train-livo-report.png"])
def test_the_ui_screenshots_are_kept_in_docs(name):
    image = Image.open(DOCS / name)
    assert image.format == "PNG" and image.size[0] >= 1000 and image.size[1] >= 800
    assert len(set(image.convert("L").resize((64, 64)).getdata())) > 8  # a rendered page, not a blank one
