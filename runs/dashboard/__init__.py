"""`l2l dashboard`: a read-only web view of a results store, live while a search writes it.

`create_app` builds the web app (`l2l.runs.dashboard.app`); `serve` runs it with uvicorn; `start_beside` starts
it in a process of its own next to a running search (`l2l search --dashboard`).
"""

from __future__ import annotations

from l2l.runs.dashboard.server import DEFAULT_HOST, DEFAULT_PORT, Beside, bind_warning, serve, start_beside

__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "Beside", "bind_warning", "serve", "start_beside"]
