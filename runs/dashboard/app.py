"""The dashboard's web app (Starlette): three pages, the JSON they poll, and the drawings they show.

Pages are Jinja2 templates with autoescaping on; the browser fills in what changes from the JSON endpoints
with ``textContent``, never as HTML. Handlers are plain functions, which Starlette runs in its thread pool,
each reading the store in short transactions through `l2l.runs.dashboard.reader.Reader`.
"""

from __future__ import annotations

import json
import re
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from l2l.runs.config import settings_shown
from l2l.runs.dashboard import figures, series
from l2l.runs.dashboard.best import best_of, evaluations
from l2l.runs.dashboard.reader import SORT_KEYS, Reader
from l2l.runs.dashboard.summaries import child_statuses
from l2l.runs.dashboard.values import BadQuery, Json, choice, cost_text, number_text, plain, query_int
from l2l.runs.estimates import Keyed, retrained_with
from l2l.runs.plots import pareto_axis_of
from l2l.runs.store_records import CHILD_STATUSES, SHARED_STATUSES, RunNotFound, StoreError, iso

HERE = Path(__file__).parent
PREFERRED_COSTS = ("flops", "params", "latency_s", "train_time_s")
BEST_MEAN = "best estimated mean so far"  # the progress chart's best line where architectures were evaluated again
POLL_MS = 2000  # how often an open page asks for news while its run is live
RUNS_PER_PAGE = 100  # the run list's page, newest first
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # scripts only from this server (no inline script, no eval); plotly sets styles inline
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
}


def create_app(storage: str, *, poll_ms: int = POLL_MS) -> Starlette:
    """The dashboard of the store at ``storage`` (any store URL); opens it read-only at once, so a store that
    cannot be read fails here with a `StoreError`, not on the first request."""
    import plotly

    reader = Reader(storage)
    warming = threading.Thread(target=figures.warm_up, name="l2l-dashboard-warm-up", daemon=True)
    warming.start()
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True))
    env.filters.update(when=_when, num=number_text, cost=cost_text)
    plotly_js = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"

    def page(template: str, status: int = 200, **values: Any) -> HTMLResponse:
        html = env.get_template(template).render(store=reader.label, poll_ms=poll_ms, status=status, **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)

    # a chart's data until the run changes (a stopped run is read once), or until the store's file is replaced
    charts = figures.Cache(64, epoch=lambda: reader.engine.generation)
    reader.engine.renewed.append(figures.forget)

    def estimated(summary: dict[str, Any]) -> dict[str, Any]:
        """A run's best as `l2l runs best` names it (`l2l.runs.dashboard.best.best_of`)."""
        return best_of(reader, charts, summary)

    def listed(request: Request) -> dict[str, Any]:
        """One page of the run list, newest first (`RUNS_PER_PAGE` runs), with where it stands in all of them."""
        total = reader.count_runs()
        last = max(1, -(-total // RUNS_PER_PAGE))
        at = min(query_int(request, "page", 1, 1, 10**9), last)
        runs = [estimated(r) for r in reader.runs(RUNS_PER_PAGE, (at - 1) * RUNS_PER_PAGE)]
        return {"runs": runs, "total": total, "page": at, "pages": last, "per": RUNS_PER_PAGE}

    def runs_page(request: Request) -> Response:
        asked = {p.strip() for p in request.query_params.get("compare", "").split(",")} - {""}  # a shared link
        picked = sorted(asked, key=lambda p: (len(p), p))  # run ids in numeric order, as the page's script keeps them
        shown = listed(request)
        unlisted = [p for p in picked if p not in {str(r["id"]) for r in shown["runs"]}][:12]
        # a run of the link that is gone (deleted, another store) is named, not silently left out
        missing = [p for p in unlisted if not _exists(reader, p)]
        return page("runs.html", **shown, picked=picked, missing=missing)

    def run_page(request: Request) -> Response:
        summary = estimated(reader.summary(request.path_params["run_id"]))
        run = reader.run(summary["id"])
        config = json.dumps(settings_shown(run.config), indent=1, sort_keys=True)
        return page("run.html", run=summary, statuses=child_statuses(summary), config=config, table=_table(request))

    def child_page(request: Request) -> Response:
        run = reader.run(request.path_params["run_id"])
        child = reader.child(run.id, request.path_params["number"])
        space, problem = figures.space_of(run)
        unused = figures.unused(space, child)  # decisions that do not change its network: not listed as its own
        return page(
            "child.html",
            run=run,
            child=child,
            describe=figures.describe(space, child),
            space_problem=problem,
            rule=(child.metrics.get("info") or {}).get("formula"),
            has_rule=getattr(space, "rule_of", None) is not None,
            spec=json.dumps(child.spec, indent=1),
            spec_items=[item for item in _spec_items(child.spec) if item[0] not in unused],
            unused=[key for key, _ in _spec_items(child.spec) if key in unused],
            metrics=json.dumps(plain(child.metrics), indent=1, sort_keys=True),
        )

    def api_runs(request: Request) -> Response:
        return Json({**listed(request), "poll_ms": poll_ms})

    def api_run(request: Request) -> Response:
        return Json(estimated(reader.summary(request.path_params["run_id"])))

    def evaluated(run_id: int, stamp: tuple[Any, ...]) -> Keyed:
        """The run's evaluations (`best.evaluations`), keyed by the finished children the ``stamp`` counts."""
        return evaluations(reader, charts, run_id, dict(stamp[0]).get("done", 0))

    def progress(run_id: int) -> dict[str, Any]:
        """A run's progress charts, read again only when the run changed (its page and the runs compared)."""

        def make() -> dict[str, Any]:
            run = reader.run(run_id)
            rows, failed = reader.rewards(run)
            shared = run.config.get("weight_sharing") is not None
            learned = [] if shared else reader.learned(run_id)
            updates = reader.updates(run_id)
            transform = str((run.config.get("controller") or {}).get("reward_transform", "reward"))
            stored = [u[3] for u in updates] if len(updates) == len(learned) else None  # what each learned from
            chart = series.progress(rows, failed, learned if all(learned) else [], stored, transform)
            if not shared and rows:  # repeated evaluations: the best estimated mean, as `runs best` names it
                from l2l.runs.estimates import best_curve

                space, _ = figures.space_of(run)
                curve, repeated = best_curve(evaluated(run_id, stamp), space, points=series.BEST_STEPS)
                if repeated:
                    chart["best"] = {"x": [n for n, _ in curve], "y": [b for _, b in curve], "label": BEST_MEAN}
            return {
                **chart,
                "updates": series.updates(updates, run.strategy),
                "shared": shared,
                "reward_label": "reward (shared weights)" if shared else "reward",
            }

        stamp = reader.stamp(run_id)
        return charts.get(("progress", run_id, stamp), make)

    def api_progress(request: Request) -> Response:
        return Json(progress(request.path_params["run_id"]))

    def api_children(request: Request) -> Response:
        run_id = reader.run(request.path_params["run_id"]).id  # a run that is not there is a 404
        q = request.query_params
        per = query_int(request, "per", 50, 1, 200)
        total, at, rows = reader.page(
            run_id,
            page=query_int(request, "page", 1, 1, 10**9),
            per=per,
            sort=str(choice(request, "sort", SORT_KEYS, "number")),
            descending=choice(request, "order", ("asc", "desc")) == "desc",
            status=choice(request, "status", CHILD_STATUSES + SHARED_STATUSES),  # not one: a 400, as a bad sort
            text=(q.get("q") or "").strip()[:200] or None,
        )
        for r in rows:
            metrics = r.pop("metrics") or {}
            r["cost"] = {k: v for k, v in (metrics.get("cost") or {}).items() if isinstance(v, int | float)}
            failed = r["error"] and r["status"] == "failed"  # a child running again keeps its last try's error
            r["error"] = (r["error"] or "").strip().splitlines()[0][:200] if failed else None
        return Json({"total": total, "per": per, "page": at, "rows": rows, "sort_keys": list(SORT_KEYS)})

    def api_pareto(request: Request) -> Response:
        run_id = reader.run(request.path_params["run_id"]).id
        keys = reader.cost_keys(run_id)
        asked = request.query_params.get("cost") or None
        if not keys:
            return Json({"keys": [], "cost": None})
        stamp = reader.stamp(run_id)

        def architectures() -> dict[int, Any]:  # each child's architecture, as `runs top` groups them
            keyed = evaluated(run_id, stamp)
            arch: dict[int, Any] = {row[0]: key for row, key in zip(keyed.rows, keyed.keys, strict=True)}
            run = reader.run(run_id)
            if run.config.get("weight_sharing") is not None:  # its few finished children are retrainings: one
                for child in reader.top(run, max(len(arch), 1), ("done",)):  # with another budget is not a repeat
                    arch[child.number] = (arch.get(child.number), retrained_with(child))
            return arch

        def costs(key: str) -> list[tuple[float, float, int]]:
            def make() -> list[tuple[float, float, int]]:
                arch = charts.get(("archs", run_id, stamp), architectures)
                return series.by_architecture(reader.costs(run_id, key), arch)

            found: list[tuple[float, float, int]] = charts.get(("costs", run_id, key, stamp), make)
            return found

        # what the vertical axis shows, as `l2l plot pareto` says it (a placement's reward is no accuracy)
        axis = charts.get(("axis", run_id, stamp), lambda: pareto_axis_of(reader.accurate(run_id)))
        if asked is not None:  # one the newest child lacks may be another's (a cost reported now and then)
            if asked not in keys and not reader.costs(run_id, asked):  # no child's: named, not replaced
                raise BadQuery(f"unknown cost {asked!r}; known: {', '.join(keys)}")
            return Json({"keys": keys, "axis": axis, **series.pareto(costs(asked), asked)})
        # the first cost in this order that tells children apart (an optimizer search's params are all equal)
        order = sorted(keys, key=lambda k: (PREFERRED_COSTS.index(k) if k in PREFERRED_COSTS else 99, k))
        for key in order:
            points = costs(key)
            if len({p[0] for p in points}) > 1:
                break
        return Json({"keys": keys, "axis": axis, **series.pareto(points, key)})

    def api_best(request: Request) -> Response:
        run = reader.run(request.path_params["run_id"])
        top = reader.top(run, 30)
        space, problem = figures.space_of(run)
        # a weight-sharing search stands by the architecture it derived (retrained from scratch where it was, as its
        # summary names it), not its luckiest scored one
        sharing = run.config.get("weight_sharing") is not None
        derived = (reader.top(run, 1, ("done",)) or reader.top(run, 1, ("derived",))) if sharing else []
        best = derived[0] if derived else top[0] if top else None
        summary = estimated(reader.summary(run.id))
        if not derived and summary["best_child"] is not None:  # the best mean's architecture, as `runs best` names it
            best = reader.child(run.id, summary["best_child"])
        out: dict[str, Any] = {"problem": problem, "child": None, "rules": [], "failed": summary["failed"]}
        if best is not None:
            out["child"] = {
                "number": best.number,
                "status": best.status,
                "reward": best.reward,
                "describe": figures.describe(space, best),
                "arch": f"/runs/{run.id}/children/{best.number}/arch.svg",
                "role": "retrained from scratch" if sharing and best.status == "done" else None,
            }
            if not derived and summary["best_estimated"]:  # the estimate it was named by, beside its own reward
                out["child"].update(estimate=summary["best"], evaluations=summary["best_n"], pm=summary["best_pm"])
            elif not derived and summary.get("best_once") not in (None, best.reward):  # as `runs best` adds it
                out["child"].update(once=summary["best_once"])
            out["rules"] = figures.rules(run, top, 3)
            for r in out["rules"]:
                r["formula_svg"] = f"/runs/{run.id}/children/{r['child']}/formula.svg"
        return Json(out)

    def api_epochs(request: Request) -> Response:
        return Json({"epochs": reader.epochs(reader.run(request.path_params["run_id"]).id)})

    def api_child(request: Request) -> Response:
        child = reader.child(request.path_params["run_id"], request.path_params["number"])
        return Json({"status": child.status, "reward": child.reward, "curves": child.curves, "error": child.error})

    def api_compare(request: Request) -> Response:
        asked = [p.strip() for p in request.query_params.get("runs", "").split(",") if p.strip()]
        bad = [p for p in asked if not re.fullmatch(r"[0-9]{1,18}", p)]
        if bad:  # as every other parameter: named, not silently dropped
            raise BadQuery(f"runs must be run ids separated by commas, got {bad[0]!r}")
        ids = [int(p) for p in asked][:12]
        out, missing, notes = [], [], []
        for run_id in ids:  # each run's best line as its own page draws it (the best estimated mean, where repeated)
            try:
                chart = progress(run_id)
            except RunNotFound:  # the others are drawn all the same; the page names what is gone
                missing.append(run_id)
                continue
            best = chart["best"]
            if not best["x"]:  # nothing to draw: said, not left out without a word (as `l2l runs best` says it)
                notes.append(_undrawn(run_id, chart["failed"]["of"], chart["shared"]))
            # a weight-sharing run's curve is of shared-weight scores, not of children trained: the chart says so
            out.append({"id": run_id, "x": best["x"], "y": best["y"], "shared": chart["shared"],
                        "mean": best.get("label") == BEST_MEAN})  # fmt: skip
        return Json({"runs": out, "missing": missing, "notes": notes})

    def arch(request: Request) -> Response:
        run = reader.run(request.path_params["run_id"])
        svg = figures.arch_svg(run, reader.child(run.id, request.path_params["number"]), reader.space_data(run.id))
        if svg is None:
            return Response("cannot draw this architecture", status_code=404, media_type="text/plain")
        return Response(svg, media_type="image/svg+xml", headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})

    def formula(request: Request) -> Response:
        run = reader.run(request.path_params["run_id"])
        child = reader.child(run.id, request.path_params["number"])
        found = figures.rules(run, [child], 1)
        if not found:
            return Response("not an update rule", status_code=404, media_type="text/plain")
        svg = figures.formula_svg(found[0]["latex"])
        return Response(svg, media_type="image/svg+xml", headers={**SECURITY_HEADERS, "Cache-Control": "max-age=3600"})

    def plotly_script(request: Request) -> Response:
        return Response(
            plotly_js.read_bytes(), media_type="text/javascript", headers={"Cache-Control": "max-age=86400"}
        )

    async def not_found(request: Request, exc: Exception) -> Response:
        return _problem(request, page, 404, str(exc))

    async def store_error(request: Request, exc: Exception) -> Response:
        return _problem(request, page, 503, str(exc))

    async def bad_query(request: Request, exc: Exception) -> Response:
        return _problem(request, page, 400, str(exc))

    async def no_route(request: Request, exc: Exception) -> Response:  # as JSON under /api/, as a page elsewhere
        return _problem(request, page, 404, f"nothing here: {request.url.path}")

    routes = [
        Route("/", runs_page),
        Route("/runs/{run_id:int}", run_page),
        Route("/runs/{run_id:int}/children/{number:int}", child_page),
        Route("/runs/{run_id:int}/children/{number:int}/arch.svg", arch),
        Route("/runs/{run_id:int}/children/{number:int}/formula.svg", formula),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id:int}", api_run),
        Route("/api/runs/{run_id:int}/progress", api_progress),
        Route("/api/runs/{run_id:int}/children", api_children),
        Route("/api/runs/{run_id:int}/children/{number:int}", api_child),
        Route("/api/runs/{run_id:int}/pareto", api_pareto),
        Route("/api/runs/{run_id:int}/best", api_best),
        Route("/api/runs/{run_id:int}/epochs", api_epochs),
        Route("/api/compare", api_compare),
        Route("/vendor/plotly.min.js", plotly_script),
        Route("/favicon.ico", lambda request: Response(status_code=204)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers = {RunNotFound: not_found, StoreError: store_error, BadQuery: bad_query, 404: no_route}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.reader = reader
    app.state.warming = warming  # matplotlib loading in the background (a benchmark waits for it)
    return app


def _problem(request: Request, page: Any, status: int, message: str) -> Response:
    if request.url.path.startswith("/api/"):
        return Json({"error": message}, status_code=status)
    response: Response = page("error.html", status=status, message=message)
    return response


def _exists(reader: Reader, text: str) -> bool:
    """Whether ``text`` names a run of the store (one the runs table does not list: older than its newest)."""
    if not re.fullmatch(r"[0-9]{1,18}", text):
        return False
    try:
        reader.run(int(text))
    except RunNotFound:
        return False
    return True


def _table(request: Request) -> dict[str, Any]:
    """The children table's filter, sort and page as the run page's address keeps them (a reload or a shared
    link shows the same rows); a sort or order it does not know is a 400, as from the JSON."""
    q = request.query_params
    sort = choice(request, "sort", SORT_KEYS, "number")
    order = choice(request, "order", ("asc", "desc"), "asc")
    page = query_int(request, "page", 1, 1, 10**9)
    status = choice(request, "status", CHILD_STATUSES + SHARED_STATUSES, "")
    return {"status": status, "q": q.get("q", "")[:200], "sort": sort, "order": order, "page": page}


def _undrawn(run_id: int, failed: int, shared: bool) -> str:
    """Why the comparison draws no line of a run: no child finished (every one failed, or none yet)."""
    if shared:
        return f"run {run_id} has scored no architecture with its shared weights yet: no line to draw"
    if failed:
        return f"no child of run {run_id} succeeded ({failed} failed): no line to draw"
    return f"run {run_id} has no finished child yet: no line to draw"


def _spec_items(spec: dict[str, Any]) -> list[tuple[str, str]]:
    """A stored spec's (decision, value) pairs as text; anchors' bit lists as digits."""
    out = []
    for item in spec.get("values") or []:
        if isinstance(item, list | tuple) and len(item) == 2:
            key, value = item
            text = "".join(str(b) for b in value) if isinstance(value, list) else str(value)
            out.append((str(key), text))
    return out


def _when(value: datetime | None) -> str:
    """A stored time to the second, in UTC."""
    text = iso(value)
    return "-" if text is None else f"{text[:19].replace('T', ' ')} UTC"
