"""The offline HTML viewer, opened in a real headless Chromium; and the `viz` command.

The tests marked ``browser`` need Chromium (Debian package ``chromium``; .ci/run installs it).
Without one they are skipped with a line saying so, and fail when CI is set: CI never
passes with the viewer untested (tests/chromium_check.py).
The page reports what it drew on <body>: ``data-rendered-nodes`` (nodes present in the
shown round and not folded away), ``data-render-ms``, ``data-search-matches``, ...
"""

from __future__ import annotations

import fcntl
import html
import json
import os
import re
import select
import subprocess
import time

import pytest
from chromium_check import require_chromium

from reflective_search.cli import main
from reflective_search.interface import ChildStep, StepEnd
from reflective_search.tree import Tree
from reflective_search.viz.export import visible_text
from reflective_search.viz.html import render_html, script_json
from test_viz_export import PROMPT, SMALL_SEARCH, fake_tree, png_size, synthetic_tree

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--virtual-time-budget=5000"]
XSS_TITLE = "</script><script>document.title='pwned'</script>"
XSS_IMG = "<img src=x onerror=\"document.title='pwned'\">"
XSS_LINK = "javascript:document.title='pwned'"


def chromium(tmp_path, *arguments: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{time.monotonic_ns()}"
    command = [require_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)  # a hang guard


def open_page(tmp_path, page, fragment: str = "") -> tuple[str, dict[str, str]]:
    """The DOM after the page's scripts ran, and the attributes of its <body>."""
    dom = chromium(tmp_path, "--dump-dom", page.as_uri() + fragment).stdout
    body = re.search(r"<body([^>]*)>", dom)
    assert body, dom[:500]
    attributes = {key: html.unescape(value) for key, value in re.findall(r'([\w-]+)="([^"]*)"', body.group(1))}
    assert "data-error" not in attributes, attributes["data-error"]
    return dom, attributes


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'<(\w+) id="{element_id}"[^>]*>(.*?)</\1>', dom, re.S)
    assert match, element_id
    return html.unescape(re.sub(r"<[^>]+>", "", match.group(2)))


@pytest.fixture(scope="module")
def search_tree(tiny_llama) -> Tree:
    from reflective_search import ReflectiveSearch

    return ReflectiveSearch(tiny_llama, SMALL_SEARCH).solve(PROMPT.strip()).tree


@pytest.fixture(scope="module")
def search_page(search_tree, tmp_path_factory):
    path = tmp_path_factory.mktemp("viewer") / "tree.html"
    search_tree.to_html(str(path), title="Numbers: 3 7 8. Target: 29.")
    return path


# -- the page, in a browser ------------------------------------------------------------


@pytest.mark.browser
def test_viewer_draws_every_node_of_a_search_tree(search_tree, search_page, tmp_path):
    _, body = open_page(tmp_path, search_page)
    assert (body["data-rendered-nodes"], body["data-total-nodes"]) == (str(search_tree.size), str(search_tree.size))
    assert body["data-selected"] == str(search_tree.chosen)  # the answer's leaf is shown first


@pytest.mark.browser
def test_viewer_fetches_nothing(search_page, tmp_path):
    _, body = open_page(tmp_path, search_page)
    assert body["data-fetched-resources"] == "0"
    page = search_page.read_text(encoding="utf-8")
    assert not re.search(r"https?:|\bsrc\s*=|\bhref\s*=|@import|url\(", page)
    assert "default-src 'none'" in page  # the page's policy forbids any fetch


@pytest.mark.browser
def test_viewer_screenshot_shows_the_tree(search_page, tmp_path):
    from matplotlib.image import imread

    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1400,900", search_page.as_uri())
    assert png_size(shot) == (1400, 900)
    pixels = (imread(shot)[:, :950, :3] * 255).round()  # the canvas, left of the side panel
    chosen_blue = (abs(pixels - (31, 78, 156)).max(axis=2) <= 2).sum()
    assert chosen_blue > 300  # the chosen path is drawn (thick blue edges and rings)


@pytest.mark.browser
def test_replay_shows_only_the_nodes_grown_by_that_round(search_tree, search_page, tmp_path):
    _, body = open_page(tmp_path, search_page, "#round=0")
    assert (body["data-round"], body["data-rendered-nodes"]) == ("0", str(search_tree.history[0]["size"]))


@pytest.mark.browser
def test_folding_a_node_hides_its_subtree(search_tree, search_page, tmp_path):
    fold = max(search_tree.children(0), key=lambda n: search_tree.num_children[n])
    below = sum(1 for n in range(search_tree.size) if fold in search_tree.path(n)[:-1])
    _, body = open_page(tmp_path, search_page, f"#fold={fold}")
    assert below > 0 and body["data-rendered-nodes"] == str(search_tree.size - below)


@pytest.mark.browser
def test_search_counts_matching_steps(tmp_path):
    page = tmp_path / "tree.html"
    fake_tree().to_html(str(page))
    _, body = open_page(tmp_path, page, "#search=LEFT")
    assert body["data-search-matches"] == "3"  # case-insensitive: nodes 1, 2, 3


@pytest.mark.browser
def test_selected_node_shows_its_text_numbers_and_path(tmp_path):
    page = tmp_path / "tree.html"
    fake_tree().to_html(str(page))
    dom, body = open_page(tmp_path, page, "#node=3")
    assert body["data-selected"] == "3"
    assert element_text(dom, "step-text") == "21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    assert element_text(dom, "path-text") == PROMPT + "7*3=21, left 8 21.\n\n21+8=29, left 29.\n\nAnswer: 7*3+8.\n\n"
    numbers = element_text(dom, "numbers")
    for expected in ("SPRM score0.5000", "visits1", "mean value0.5000", "prior1.0000", "depth2",
                     "terminalyes (eos)", "answer7*3+8", "added in round2"):
        assert expected in numbers


# -- the page under a real mouse and keyboard --------------------------------------------------


class Browser:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4: no port)."""

    def __init__(self, profile) -> None:
        command_read, self._command_write = os.pipe()
        self._reply_read, reply_write = os.pipe()

        def child_pipes() -> None:  # the protocol's fixed fds; via high numbers so neither end is clobbered
            ends = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in (command_read, reply_write)]
            os.dup2(ends[0], 3)
            os.dup2(ends[1], 4)

        flags = [f for f in CHROMIUM_FLAGS if not f.startswith("--virtual-time")]
        self._process = subprocess.Popen(
            [require_chromium(), *flags, f"--user-data-dir={profile}", "--remote-debugging-pipe",
             "--window-size=1400,900", "about:blank"],
            pass_fds=(3, 4), preexec_fn=child_pipes, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(command_read)
        os.close(reply_write)
        self._buffer, self._next_id, self._session = b"", 0, None
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self._session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]  # the page

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params}
        if self._session is not None:
            message["sessionId"] = self._session
        os.write(self._command_write, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read_message()
            if reply.get("id") == self._next_id:
                assert "error" not in reply, reply["error"]
                return reply["result"]

    def _read_message(self, timeout: float = 300.0) -> dict:  # a hang guard, not a speed bound
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._reply_read], [], [], max(0.0, deadline - time.monotonic()))
            chunk = os.read(self._reply_read, 1 << 16) if ready else b""
            assert chunk, "chromium stopped answering"
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def body(self, attribute: str) -> str | None:
        return self.evaluate(f"document.body && document.body.getAttribute({json.dumps(attribute)})")

    def open(self, url: str) -> None:
        """Load ``url`` afresh and wait until the viewer has drawn."""
        self.evaluate("window.previousPage = true")  # gone once the new document replaced this one
        self.call("Page.navigate", url=url)
        deadline = time.monotonic() + 300  # a guard against a hung browser, not a speed bound: a loaded box is slow
        while self.evaluate("window.previousPage || document.readyState !== 'complete'") or \
                self.body("data-render-ms") is None:
            assert time.monotonic() < deadline, "the viewer did not finish drawing"
            time.sleep(0.05)
        assert self.body("data-error") is None, self.body("data-error")

    def mouse(self, kind: str, x: float, y: float, **extra) -> None:
        self.call("Input.dispatchMouseEvent", type=kind, x=x, y=y, **extra)

    def click(self, x: float, y: float, clicks: int = 1) -> None:
        for count in range(1, clicks + 1):
            self.mouse("mousePressed", x, y, button="left", clickCount=count)
            self.mouse("mouseReleased", x, y, button="left", clickCount=count)

    def key(self, key: str, code: int) -> None:
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, key=key, code=key, windowsVirtualKeyCode=code)

    def settle(self) -> None:
        """Wait two frames, so redraws queued by an event have run."""
        self.call("Runtime.evaluate", awaitPromise=True,
                  expression="new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")

    def close(self) -> None:
        os.close(self._command_write)
        self._process.terminate()
        self._process.wait(timeout=300)  # a hang guard
        os.close(self._reply_read)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    browser = Browser(tmp_path_factory.mktemp("browser"))
    yield browser
    browser.close()


def inner_child(tree: Tree) -> int:
    """The root's child with the most children (a node worth folding)."""
    return max(tree.children(0), key=lambda n: (int(tree.num_children[n]), -n))


@pytest.mark.browser
def test_clicking_a_node_selects_it_and_shows_its_text(browser, search_tree, search_page):
    browser.open(search_page.as_uri())
    node = inner_child(search_tree)
    x, y = browser.evaluate(f"treeViewer.screenPosition({node})")
    browser.click(x, y)
    assert browser.body("data-selected") == str(node)
    assert browser.evaluate("document.getElementById('step-text').textContent") == visible_text(search_tree.texts[node])


@pytest.mark.browser
def test_hovering_a_node_shows_its_text_in_a_tooltip(browser, search_tree, search_page):
    browser.open(search_page.as_uri())
    node = inner_child(search_tree)
    x, y = browser.evaluate(f"treeViewer.screenPosition({node})")
    browser.mouse("mouseMoved", x, y)
    tip = browser.evaluate("[document.getElementById('tooltip').hidden, document.getElementById('tooltip').textContent]")
    assert tip[0] is False and tip[1].startswith(f"#{node}  score {search_tree.score[node]:.3f}")


@pytest.mark.browser
def test_double_click_folds_and_unfolds_a_subtree(browser, search_tree, search_page):
    browser.open(search_page.as_uri())
    node = inner_child(search_tree)
    below = sum(1 for n in range(search_tree.size) if node in search_tree.path(n)[:-1])
    x, y = browser.evaluate(f"treeViewer.screenPosition({node})")
    browser.click(x, y, clicks=2)
    browser.settle()
    assert browser.body("data-rendered-nodes") == str(search_tree.size - below)
    browser.click(x, y, clicks=2)
    browser.settle()
    assert browser.body("data-rendered-nodes") == str(search_tree.size)


@pytest.mark.browser
def test_typing_a_search_counts_matches(browser, search_tree, search_page):
    browser.open(search_page.as_uri())
    browser.evaluate("document.getElementById('search').focus()")
    browser.call("Input.insertText", text="a")
    expected = sum("a" in text.lower() for text in search_tree.texts[: search_tree.size])
    assert browser.body("data-search-matches") == str(expected)


@pytest.mark.browser
def test_slider_key_steps_back_one_round(browser, search_tree, search_page):
    browser.open(search_page.as_uri())
    browser.evaluate("document.getElementById('round').focus()")
    browser.key("ArrowLeft", 37)
    browser.settle()
    last = len(search_tree.history) - 1
    assert browser.body("data-round") == str(last)
    assert browser.body("data-rendered-nodes") == str(search_tree.history[last]["size"])


@pytest.mark.browser
def test_wheel_zooms_in_around_the_pointer(browser, search_tree, search_page):
    browser.open(search_page.as_uri())
    a, b = [browser.evaluate(f"treeViewer.screenPosition({n})") for n in (1, search_tree.size - 1)]
    browser.mouse("mouseWheel", 300, 300, deltaX=0, deltaY=-400)
    browser.settle()
    c, d = [browser.evaluate(f"treeViewer.screenPosition({n})") for n in (1, search_tree.size - 1)]
    assert abs(d[1] - c[1]) > 1.5 * abs(b[1] - a[1])


@pytest.mark.browser
def test_five_thousand_nodes_redraw_zoomed_in_and_whole(browser, tmp_path):
    page = tmp_path / "big.html"
    synthetic_tree(5000).to_html(str(page))
    browser.open(page.as_uri() + "#node=2500")  # centred on a node, close enough for labels
    assert browser.evaluate("treeViewer.timedDraw()") >= 0  # drawn without an exception (its speed is bench's)
    browser.key("f", 70)  # fit: the whole tree in view
    browser.settle()
    assert browser.evaluate("treeViewer.timedDraw()") >= 0
    assert (browser.body("data-rendered-nodes"), browser.body("data-error")) == ("5000", None)


# -- model text is text ------------------------------------------------------------------


def xss_tree() -> Tree:
    tree = Tree([1], XSS_TITLE + "\n\n")
    steps = [ChildStep((2 + i,), text, -1.0, 0.5, StepEnd.DELIMITER)
             for i, text in enumerate([XSS_TITLE, XSS_IMG, XSS_LINK, "<!-- \u2028\u2029 -->"])]
    tree.add_children(0, steps, [0.25] * 4)
    tree.visits[:5] = [4, 1, 1, 1, 1]
    tree.chosen = 2
    return tree


@pytest.mark.browser
def test_model_text_executes_nothing(tmp_path):
    page = tmp_path / "xss.html"
    xss_tree().to_html(str(page))
    dom, body = open_page(tmp_path, page, "#node=2")
    title = html.unescape(re.search(r"<title>(.*?)</title>", dom, re.S).group(1))
    assert title == XSS_TITLE and "pwned" != title
    assert body["data-rendered-nodes"] == "5"
    assert "<img" not in dom.lower() and 'href="javascript' not in dom.lower()
    assert element_text(dom, "step-text") == XSS_IMG  # shown as text
    source = page.read_text(encoding="utf-8")
    assert "\\u003c/script\\u003e\\u003cscript\\u003edocument.title='pwned'\\u003c/script\\u003e" in source
    assert source.count("</script>") == 2  # the data element's and the viewer's own


def test_script_json_escapes_markup_and_line_separators():
    value = {"t": "</script>&<!--\u2028\u2029\ud800é"}
    text = script_json(value)
    assert text == '{"t":"\\u003c/script\\u003e\\u0026\\u003c!--\\u2028\\u2029\\ud800é"}'
    assert json.loads(text) == value


def test_title_is_escaped_in_the_page_head():
    page = render_html(fake_tree(), title="<b>&</b>")
    assert "<title>&lt;b&gt;&amp;&lt;/b&gt;</title>" in page


# -- scale -------------------------------------------------------------------------------------


@pytest.mark.browser
def test_five_thousand_nodes_all_render(tmp_path):
    tree = synthetic_tree(5000)
    page = tmp_path / "big.html"
    tree.to_html(str(page))
    _, body = open_page(tmp_path, page)
    assert (body["data-rendered-nodes"], body["data-total-nodes"]) == ("5000", "5000")
    assert float(body["data-render-ms"]) >= 0  # the page timed its drawing; speed is not a test's to judge


# -- the command line ----------------------------------------------------------------------------


def test_viz_command_writes_html_png_svg_and_dot(tmp_path):
    source = tmp_path / "tree.json"
    fake_tree().to_json(str(source))
    for suffix in (".html", ".png", ".svg", ".dot"):
        assert main(["viz", str(source), "-o", str(tmp_path / f"out{suffix}")]) == 0
    assert (tmp_path / "out.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert png_size(tmp_path / "out.png") == (1600, 1000)
    assert (tmp_path / "out.svg").read_text(encoding="utf-8").startswith("<?xml")
    assert (tmp_path / "out.dot").read_text(encoding="utf-8") == fake_tree().to_dot()


def test_viz_command_defaults_to_html_beside_the_tree(tmp_path, capsys):
    source = tmp_path / "tree.json"
    fake_tree().to_json(str(source))
    assert main(["viz", str(source)]) == 0
    assert (tmp_path / "tree.html").is_file()
    assert capsys.readouterr().out == f"wrote {tmp_path / 'tree.html'} (4 nodes)\n"


def test_viz_command_refuses_an_unknown_output_kind(tmp_path, capsys):
    source = tmp_path / "tree.json"
    fake_tree().to_json(str(source))
    assert main(["viz", str(source), "-o", str(tmp_path / "out.txt")]) == 2
    assert capsys.readouterr().err == (f"error: --output {tmp_path / 'out.txt'}: unknown kind '.txt'; "
                                       "end it in one of .html, .png, .svg, .dot\n")


def test_viz_command_reports_a_broken_tree_file(tmp_path, capsys):
    source = tmp_path / "tree.json"
    source.write_text('{"schema": "reflective_search.tree", "version": 7}', encoding="utf-8")
    assert main(["viz", str(source)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {source}: tree file version 7 is not supported")
