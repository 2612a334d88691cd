"""`l2l dashboard` in a real browser: Debian's Chromium, driven headless by Playwright, against a store that a search
in another process is writing. Skipped, saying why, only where no Chromium is installed (.ci/run installs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from l2l.runs.driver import this_driver
from l2l.runs.store import Store
from tests.test_dashboard import MARKUP, TOY_A, TOY_B, add_optimizer_run, finish, marked_search, record_updates

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip(
        "no Chromium on this machine: install Debian's package (apt-get install chromium; .ci/run does)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the dev extra's playwright is not installed")
TIMEOUT_MS = 30_000
CHILDREN = 14  # of the live search, one every 0.4 s: long enough to watch it change


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A search of the test space `Marked` writing a store from another process (a child every 0.4 s), an
    optimizer run beside it, and the dashboard serving the store from a thread here."""
    import uvicorn

    from l2l.runs.dashboard.app import create_app
    from l2l.runs.dashboard.server import free_port

    db = tmp_path_factory.mktemp("browser") / "store.db"
    url = f"sqlite:///{db}"
    add_optimizer_run(Store(url))  # run 1; the search is run 2
    code = "from l2l.runs.cli import main; main()"
    search = subprocess.Popen(
        [sys.executable, "-c", code, *marked_search(url, children=CHILDREN, delay=0.4)], stdout=subprocess.DEVNULL
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(url, poll_ms=500), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "search": search, "store": Store(url)}
    finally:
        if search.poll() is None:
            search.kill()
        search.wait()
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    # Playwright's waits evaluate strings, which the dashboard's Content-Security-Policy forbids; the pages keep to
    # it on their own, which test_the_pages_load_only_this_servers_scripts_under_their_policy checks
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
    p = context.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    p.on("pageerror", lambda e: errors.append(str(e)))
    yield p
    context.close()
    assert not errors, errors  # no script error on any page


def finished(live: dict[str, Any]) -> None:
    assert live["search"].wait(timeout=120) == 0


def test_the_run_page_follows_a_running_search_without_a_reload(live: dict[str, Any], page: Any) -> None:
    store = live["store"]
    deadline = time.monotonic() + 60
    while len(store.list_runs()) < 2 and time.monotonic() < deadline:  # the search has recorded its run
        time.sleep(0.05)
    page.goto(f"{live['base']}/runs/2")
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    done, best = page.text_content("#n-done"), page.text_content("#best-reward")
    assert live["search"].poll() is None, "the search ended before the page opened"
    assert int(done or 0) <= CHILDREN // 2, f"the page opened late, at {done} children: too few left to watch"
    page.wait_for_function(f"document.querySelector('#n-done').textContent !== {done!r}")
    page.wait_for_function(f"document.querySelector('#best-reward').textContent !== {best!r}")
    assert int(page.text_content("#n-done") or 0) > int(done or 0)
    page.wait_for_function("document.querySelector('#state').textContent === 'done'", timeout=60_000)
    assert page.text_content("#stopped-note") == ""  # done: it cannot be resumed
    assert page.evaluate("window.loadedOnce") is True
    counts = store.count_children(2)
    assert page.text_content("#n-done") == str(counts["done"])
    from l2l.runs.estimates import best_estimate  # the best as `l2l runs best` names it

    assert float(page.text_content("#best-reward") or 0) == pytest.approx(
        best_estimate(store.rewards(2), None), abs=1e-4
    )
    page.wait_for_selector("#chart-progress .main-svg")  # plotly drew the chart
    assert page.locator("#children tbody tr").count() == min(25, counts["done"] + counts["failed"])


def test_a_failed_childs_traceback_opens(live: dict[str, Any], page: Any) -> None:
    finished(live)
    page.goto(f"{live['base']}/runs/2")
    page.select_option("#status-filter", "failed")
    page.wait_for_function("[...document.querySelectorAll('#children tbody tr')].every(r => r.className === 'failed')")
    page.locator("#children tbody tr a").first.click()
    page.wait_for_url("**/children/*")
    details = page.locator("details#error")
    if details.get_attribute("open") is None:
        details.locator("summary").click()
    assert page.locator("#traceback").is_visible()
    text = page.text_content("#traceback") or ""
    assert "Traceback (most recent call last)" in text and "RuntimeError: child exploded on purpose" in text


def test_an_answer_that_arrives_late_does_not_overwrite_a_filtered_table(live: dict[str, Any], page: Any) -> None:
    finished(live)
    held: list[Any] = []  # the page's first, unfiltered request for the children table, answered last

    def route(r: Any) -> None:
        if "status=" in r.request.url or held:
            r.continue_()
        else:
            held.append(r)

    page.route(lambda url: "/api/runs/2/children?" in url, route)
    page.goto(f"{live['base']}/runs/2")
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while not held and time.monotonic() < deadline:  # the page asked for the unfiltered table (slow on a busy machine)
        page.wait_for_timeout(50)
    page.select_option("#status-filter", "failed")
    page.wait_for_function("(() => { const rows = [...document.querySelectorAll('#children tbody tr')]; "
                           "return rows.length > 0 && rows.every(r => r.className === 'failed'); })()")  # fmt: skip
    assert len(held) == 1, "the unfiltered request was not held back: the case did not happen"
    with page.expect_response(lambda r: "/children?" in r.url and "status=" not in r.url):
        held[0].continue_()
    page.wait_for_timeout(500)  # time for the page to handle the late answer
    classes = page.eval_on_selector_all("#children tbody tr", "rows => rows.map(r => r.className)")
    assert classes and set(classes) == {"failed"}, classes


def test_a_weight_sharing_runs_epochs_count_from_one_as_the_cli_does(
    live: dict[str, Any], page: Any, sharing_run: Callable[..., int]
) -> None:
    finished(live)  # its run is recorded after the search's, whose page test expects it as run 2
    run = sharing_run(live["store"], [[0.1], [0.2]], 2)  # stored as epochs 0 and 1
    page.goto(f"{live['base']}/runs/{run}")
    page.wait_for_function("document.querySelectorAll('#epochs tbody tr').length === 2")
    assert [r.split("\t")[0] for r in page.locator("#epochs tbody tr").all_inner_texts()] == ["1", "2"]
    # the derived architecture's figure sat below the line's best with no word of why
    page.wait_for_function("document.querySelector('#progress-note').textContent.includes('one validation batch')")
    assert "scored on the whole validation split" in (page.text_content("#progress-note") or "")


def test_a_spec_value_holding_markup_is_shown_as_text(live: dict[str, Any], page: Any) -> None:
    finished(live)
    page.goto(f"{live['base']}/runs/2")
    page.fill("#text-filter", "<script>")
    page.wait_for_function(
        "(() => { const t = document.querySelector('#page-info').textContent; "
        f"return /^[0-9]+ children/.test(t) && !t.startsWith('{CHILDREN} '); }})()"
    )
    page.locator("#children tbody tr a").first.click()
    page.wait_for_url("**/children/*")
    assert MARKUP in (page.text_content("#spec") or "")
    assert page.locator("#spec b").count() == 0 and page.locator("#spec script").count() == 0
    assert page.evaluate("window.pwned") is None
    page.goto(f"{live['base']}/")  # the run's name is markup too
    assert page.locator("#runs td", has_text="<i>marked</i>").count() == 1


def test_an_optimizer_runs_formula_opens(live: dict[str, Any], page: Any) -> None:
    page.goto(f"{live['base']}/runs/1")
    formula = page.locator("#rules img.formula").first
    formula.wait_for()
    page.wait_for_function("(() => { const i = document.querySelector('#rules img.formula'); "
                           "return i.complete && i.naturalWidth > 50; })()")  # fmt: skip
    assert "sign" in (formula.get_attribute("alt") or "")
    page.wait_for_selector("#heat-0 .main-svg")
    page.locator("#rules h3 a").first.click()
    page.wait_for_url("**/children/2")
    page.wait_for_function("document.querySelector('#formula').naturalWidth > 50")


def test_runs_can_be_compared(live: dict[str, Any], page: Any) -> None:
    finished(live)
    page.goto(f"{live['base']}/")
    for run in (1, 2):  # the optimizer run and the search (other tests add runs to this store)
        page.locator(f"input.pick[value='{run}']").check()
    page.wait_for_function("document.querySelectorAll('#chart-compare .scatterlayer .trace').length === 2")
    assert page.locator("#compare-hint").is_hidden()
    assert page.url.endswith("/?compare=1,2")  # the address names the comparison: shared, it draws the same
    page.goto(page.url)
    page.wait_for_function("document.querySelectorAll('#chart-compare .scatterlayer .trace').length === 2")
    assert page.locator("input.pick[value='2']").is_checked()
    page.locator("input.pick[value='1']").uncheck()
    page.locator("input.pick[value='2']").uncheck()
    page.wait_for_function("location.search === ''")
    assert page.locator("#compare-hint").is_visible()


def test_the_pages_load_only_this_servers_scripts_under_their_policy(live: dict[str, Any], browser: Any) -> None:
    finished(live)
    context = browser.new_context()
    page = context.new_page()
    requested: list[str] = []
    console: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    page.on("console", lambda m: console.append(m.text))
    try:
        for path in ("/", "/runs/2", "/runs/1", "/runs/2/children/1"):
            page.goto(f"{live['base']}{path}")
            page.wait_for_load_state("networkidle")
        page.goto(f"{live['base']}/runs/1")
        page.locator("#heat-0 .main-svg").first.wait_for(timeout=TIMEOUT_MS)  # plotly drew under the policy
    finally:
        context.close()
    assert requested and all(u.startswith(live["base"]) for u in requested), requested  # no CDN
    assert not [m for m in console if "Content Security Policy" in m], console


def test_a_run_page_redraws_its_best_and_writes_figures_as_the_cli(live: dict[str, Any], page: Any) -> None:
    """A trial's run page said "best estimated mean (5 evaluations)" at the top and "estimated mean 1.0500 over 1
    evaluations" in its Best architecture line: more evaluations of the same architecture never redrew it. The same
    page drew TPE's entropy and loss as lines at 0, and its table showed "params 10578.000" and "1.96e-4" seconds
    beside "0.00", and "1 children"."""
    finished(live)  # its run is recorded after the search's, whose page test expects it as run 2
    store = live["store"]
    run = store.create_run(space="toy", strategy="tpe", config={}, seed=0, n_children=8, code_version="t")
    store.claim_run(run, this_driver())  # live: the page asks for news every 0.5 s
    solo = {"cost": {"params": 10578.0}, "runtime": {"wall_time": 1.96e-4, "worker": "w-solo"}}
    finish(store, run, [(0, TOY_A, 0.9, solo), (1, TOY_B, 0.5, {"runtime": {"wall_time": 1.5}}), (2, TOY_B, 0.5, {})])
    record_updates(store, run, [(0.0, 0.0)])
    try:
        page.goto(f"{live['base']}/runs/{run}")
        line = "document.querySelector('#best-describe').textContent"
        # evaluated once: its reward, as `l2l runs best` names it
        page.wait_for_function(f"{line}.includes('child 0, reward 0.9000')")
        assert page.text_content("#best-label") == "reward of the best architecture (evaluated once)"
        finish(store, run, [(3, TOY_A, 0.9, {}), (4, TOY_A, 0.9, {})])  # the same architecture, the same estimate
        page.wait_for_function(f"{line}.includes(', estimated mean 0.9000 ± 0.0000 (95%) over 3 evaluations (')")
        assert page.text_content("#best-label") == "best estimated mean ± 95% (3 evaluations)"
        assert page.text_content("#best-child") == "0"
        assert page.text_content("#updates-note") == "tpe has no policy: it reports no entropy and no loss"
        assert page.locator("#chart-updates").is_hidden()  # no line at 0
        page.wait_for_function("document.querySelectorAll('#children tbody tr').length === 5")
        cells = page.eval_on_selector_all(
            "#children tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.textContent))"
        )
        assert [(row[5], row[9]) for row in cells[:3]] == [("params 10,578", "0.00"), ("", "1.50"), ("", "-")]
        page.fill("#text-filter", "w-solo")
        page.wait_for_function("document.querySelector('#page-info').textContent === '1 child · page 1 of 1'")
    finally:
        store.set_run_status(run, "done")


def test_a_child_of_one_epoch_says_its_curves_in_words(live: dict[str, Any], page: Any) -> None:
    """A child trained one epoch drew its loss and its accuracy as two lone markers on two axes, one over the
    other; a child of two epochs still gets the chart."""
    finished(live)
    store = live["store"]
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=2, code_version="t")
    finish(store, run, [(0, TOY_A, 0.8, {"curves": {"train_loss": [0.52], "val_acc": [0.8]}}),
                        (1, TOY_B, 0.9, {"curves": {"train_loss": [0.6, 0.4], "val_acc": [0.7, 0.9]}})])  # fmt: skip
    store.set_run_status(run, "done")
    page.goto(f"{live['base']}/runs/{run}/children/0")
    page.wait_for_function("document.querySelector('#curves-note').textContent !== ''")
    assert page.text_content("#curves-note") == "After its one epoch: train_loss 0.5200, val_acc 0.8000."
    assert page.locator("#chart-curves").is_hidden()
    page.goto(f"{live['base']}/runs/{run}/children/1")
    page.wait_for_selector("#chart-curves .main-svg")
    assert page.text_content("#curves-note") == ""


def test_a_run_whose_children_all_failed_says_what_its_crosses_are(live: dict[str, Any], page: Any) -> None:
    """Its reward chart drew the failed children as red crosses at 0 with no legend: they read as rewards of 0."""
    from l2l.runs.store import NewChild
    from l2l.search_spaces import load_space

    finished(live)
    store = live["store"]
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=2, code_version="t")
    toy = load_space("toy", {})
    store.add_children(
        run, [NewChild(n, n, t, toy.decode(t).to_json(), -1.0, 1.0, 0) for n, t in ((0, TOY_A), (1, TOY_B))]
    )
    for n in (0, 1):
        store.finish_child(run, n, {"status": "failed", "reward": None, "error": "SpaceError: no"}, 0.0)
    store.set_run_status(run, "done")
    page.goto(f"{live['base']}/runs/{run}")
    page.wait_for_selector("#chart-progress .legendtext")
    assert page.locator("#chart-progress .legendtext").all_text_contents() == ["failed (no reward; drawn at 0)"]


def test_back_steps_through_the_childrens_filter_and_sort(live: dict[str, Any], page: Any) -> None:
    """Sort, page and filter replaced the address: Back went from a filtered, sorted table straight off the page."""
    finished(live)
    page.goto(f"{live['base']}/runs/2")
    page.wait_for_selector("#children tbody tr")
    page.select_option("#status-filter", "failed")
    page.wait_for_url("**/runs/2?status=failed")
    page.locator("#children th[data-sort='reward']").click()
    page.wait_for_url("**/runs/2?status=failed&sort=reward&order=desc")
    page.go_back()
    page.wait_for_url("**/runs/2?status=failed")
    page.wait_for_function("!document.querySelector(\"#children th[data-sort='reward']\").classList.contains('sorted')")
    page.go_back()
    page.wait_for_url("**/runs/2")
    page.wait_for_function("document.querySelector('#status-filter').value === ''")


def test_one_compared_run_is_named_and_a_missing_one_said(live: dict[str, Any], page: Any) -> None:
    """With one run the chart had no legend (plotly hides a lone trace's): nothing said which run it drew; and
    `/?compare=2,99` dropped run 99 without a word."""
    finished(live)
    page.goto(f"{live['base']}/?compare=2,99")
    page.wait_for_function("document.querySelectorAll('#chart-compare .scatterlayer .trace').length === 1")
    (legend,) = page.locator("#chart-compare .legendtext").all_text_contents()
    assert legend.startswith("run 2 <i>marked</i>")
    assert page.text_content("#compare-missing") == "No run 99 in this store: the comparison leaves it out."


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served on a free port from a thread here; its base address."""
    import uvicorn

    from l2l.runs.dashboard.server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_page_says_when_the_store_stops_answering(browser: Any, page: Any, tmp_path: Any) -> None:
    """While the store was down every poll answered 503 and the page kept its old figures without a word."""
    from l2l.runs.dashboard.app import create_app
    from l2l.runs.store import StoreError

    url = f"sqlite:///{tmp_path / 'store.db'}"
    add_optimizer_run(Store(url))
    app = create_app(url, poll_ms=300)
    reader, calls = app.state.reader, [0]
    count_runs = reader.count_runs

    def failing() -> int:  # the page itself is read; every poll after it finds the store gone
        calls[0] += 1
        if calls[0] > 1:
            raise StoreError(f"store {url}: count runs failed: connection failed: Connection refused")
        return count_runs()

    reader.count_runs = failing
    with serving(app) as base:
        page.goto(f"{base}/")
        page.wait_for_selector("#store-problem:not([hidden])")
        text = page.text_content("#store-problem")
        assert "Connection refused" in text and "the figures below are the last ones read; retrying" in text
        assert page.locator("#runs tbody tr[data-run='1']").count() == 1  # what was read is still shown
        reader.count_runs = count_runs  # the store is back: the next poll clears the notice
        page.wait_for_selector("#store-problem", state="hidden")


def test_runs_compared_on_one_page_of_the_list_stay_compared_on_the_next(page: Any, tmp_path: Any) -> None:
    from l2l.runs.dashboard.app import RUNS_PER_PAGE, create_app

    url = f"sqlite:///{tmp_path / 'many.db'}"
    store = Store(url)
    add_optimizer_run(store)  # run 1, on the second page
    for i in range(RUNS_PER_PAGE):
        store.create_run(space="toy", strategy="random", config={}, seed=i, n_children=2, code_version="t")
    newest = RUNS_PER_PAGE + 1
    finish(store, newest, [(0, TOY_A, 0.5, {}), (1, TOY_B, 0.7, {})])  # a best line to draw
    with serving(create_app(url, poll_ms=300)) as base:
        page.goto(f"{base}/")
        page.locator(f"input.pick[value='{newest}']").check()
        page.wait_for_function("location.search === '?compare=" + str(newest) + "'")
        assert page.get_attribute("#runs-pager a[rel=next]", "href") == f"/?page=2&compare={newest}"
        page.click("#runs-pager a[rel=next]")
        page.wait_for_selector("#runs tbody tr[data-run='1']")
        page.locator("input.pick[value='1']").check()  # run 1 here, the newest from the first page
        page.wait_for_function("document.querySelectorAll('#chart-compare .scatterlayer .trace').length === 2")
        assert page.url.endswith(f"/?page=2&compare=1,{newest}")


def test_a_compared_run_deleted_while_the_page_is_open_is_named_not_dropped(page: Any, tmp_path: Any) -> None:
    """`l2l runs delete 6` with `/?compare=2,6` open: at the next redraw run 6 left the chart without a word (only
    a page loaded afresh said it was gone)."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'gone.db'}"
    store = Store(url)
    for run_id in (1, 2, 3):
        store.create_run(space="toy", strategy="random", config={}, seed=run_id, n_children=2, code_version="t")
        finish(store, run_id, [(0, TOY_A, 0.5, {}), (1, TOY_B, 0.7, {})])
    with serving(create_app(url, poll_ms=300)) as base:
        page.goto(f"{base}/?compare=1,2")
        page.wait_for_function("document.querySelectorAll('#chart-compare .scatterlayer .trace').length === 2")
        assert not page.locator("#compare-missing").count()
        store.delete_run(1)
        page.locator("input.pick[value='3']").check()  # the comparison is drawn again
        page.wait_for_function("document.querySelectorAll('#chart-compare .scatterlayer .trace').length === 2")
        assert page.text_content("#compare-missing") == "No run 1 in this store: the comparison leaves it out."
        assert page.url.endswith("/?compare=1,2,3")  # still asked for: the address names it


def test_a_child_page_fits_a_phone_wide_window(browser: Any, tmp_path: Any) -> None:
    """At 400 px a child's page was 617 px wide: the grid cell holding a Ray node id (64 characters, no space)
    was as wide as the id, and the page scrolled sideways."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'narrow.db'}"
    store = Store(url)
    store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="t")
    finish(store, 1, [(0, TOY_A, 0.5, {"runtime": {"node": "f" * 64, "worker": "w" * 40}})])
    context = browser.new_context(viewport={"width": 400, "height": 900}, bypass_csp=True)
    try:
        page = context.new_page()
        with serving(create_app(url, poll_ms=300)) as base:
            page.goto(f"{base}/runs/1/children/0")
            page.wait_for_selector("text=" + "f" * 64)
            assert page.evaluate("document.documentElement.scrollWidth") <= 400
    finally:
        context.close()


def test_a_right_hand_axis_has_ticks_of_its_own(page: Any, tmp_path: Any) -> None:
    """A child's curves put accuracy on the right-hand axis at the left one's gridlines: 1.0029, 0.944, ... (an
    accuracy above 1), and the loss axis of another chart went below 0."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'axes.db'}"
    store = Store(url)
    store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=1, code_version="t")
    curves = {"train_loss": [2.51, 1.2, 0.6, 0.35], "val_acc": [0.7675, 0.88, 0.95, 1.0]}
    finish(store, 1, [(0, TOY_A, 1.0, {"curves": curves})])
    with serving(create_app(url, poll_ms=300)) as base:
        page.goto(f"{base}/runs/1/children/0")
        page.wait_for_selector("#chart-curves .y2tick text")
        ticks = [float(t) for t in page.locator("#chart-curves .y2tick text").all_text_contents()]
        assert ticks and all(0.7 <= t <= 1.0 for t in ticks), ticks
        assert all(round(t, 2) == t for t in ticks), ticks  # round numbers, not the left axis's gridlines


def test_a_run_deleted_while_its_page_is_open_says_so(page: Any, tmp_path: Any) -> None:
    """`l2l runs delete` with the run's page open: the page kept "done" and its figures, with only a red line at
    the top naming the missing run."""
    from l2l.runs.dashboard.app import create_app

    url = f"sqlite:///{tmp_path / 'deleted.db'}"
    store = Store(url)
    run = store.create_run(space="toy", strategy="random", config={}, seed=0, n_children=4, code_version="t")
    store.claim_run(run, this_driver())  # live: the page asks for news every 0.3 s
    finish(store, run, [(0, TOY_A, 0.5, {})])
    with serving(create_app(url, poll_ms=300)) as base:
        page.goto(f"{base}/runs/{run}")
        page.wait_for_function("document.querySelector('#state').textContent === 'running'")
        store.delete_run(run)
        page.wait_for_function("document.querySelector('#state').textContent === 'deleted'")
        assert page.text_content("#stopped-note") == "no longer in the store: what this page shows is what it was"
