"""How docs/dashboard-architecture.png and docs/dashboard-optimizer.png were made: two real small searches, the
dashboard on their stores, Debian's Chromium (headless, through Playwright) photographing each run page down to
its children table.

    python docs/screenshots.py        # about two minutes on 2 cores
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

DOCS = Path(__file__).parent
RULES = "update rules on digits"  # the optimizer search's name
SEARCHES = {
    "dashboard-architecture.png": ["--space", "nb201", "--children", "300", "--name", "NAS-Bench-201 cells"],
    "dashboard-optimizer.png": [*"--space optimizer --children 24 --batch 4 -S epochs=2".split(), "--name", RULES],
}


def photograph(storage: str, out: Path) -> None:
    """The run page of run 1 in ``storage``, from its top to its children table, once its pictures are drawn."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    from l2l.runs.dashboard.app import create_app
    from l2l.runs.dashboard.server import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(storage), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            # bypass_csp: Playwright's waits evaluate strings, which the pages' policy forbids
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, bypass_csp=True)
            page.goto(f"http://127.0.0.1:{port}/runs/1")
            page.wait_for_selector("#chart-progress .main-svg")
            page.wait_for_function("document.querySelector('#best-describe').textContent.length > 0", timeout=60_000)
            page.wait_for_function(
                "[...document.querySelectorAll('img')].every(i => i.hidden || (i.complete && i.naturalWidth > 0))",
            )
            page.wait_for_timeout(1500)  # plotly's last redraws
            bottom = page.locator("#filters").bounding_box()
            assert bottom is not None
            page.screenshot(path=str(out), full_page=True, clip={"x": 0, "y": 0, "width": 1400, "height": bottom["y"]})
            browser.close()
    finally:
        server.should_exit = True
        thread.join()


def main() -> None:
    code = "from l2l.runs.cli import main; main()"
    for name, args in SEARCHES.items():
        with tempfile.TemporaryDirectory() as tmp:
            storage = f"sqlite:///{tmp}/store.db"
            search = [sys.executable, "-c", code, "search", *args, "--executor", "local", "-q", "--storage", storage]
            subprocess.run(search, check=True)
            photograph(storage, DOCS / name)
            print(f"wrote {DOCS / name}")


if __name__ == "__main__":
    main()
