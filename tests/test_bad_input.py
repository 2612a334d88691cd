"""Every mistake on the command line is one `error:` line with a non-zero exit, through the console script's
own entry point (`l2l.runs.cli.main`), never a traceback or a box."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from l2l.runs.cli import main
from l2l.search_spaces import load_space

NO_EVALUATE = """
from l2l.search_spaces import Decision, SearchSpace


class NoEval(SearchSpace):
    name = "noeval"

    def decisions(self):
        return [Decision.categorical("x", [1, 2])]


class NoSuper(SearchSpace):
    name = "nosuper"

    def __init__(self, width=4):
        self.width = width

    def decisions(self):
        return [Decision.categorical("x", [1, 2])]

    def evaluate(self, spec, ctx):
        raise AssertionError("never reached")
"""

CASES = [
    # (arguments, exit code, the error line; {db} and {tmp} are filled in)
    (
        ["search", "--childs", "3"],
        2,
        "error: No such option: --childs (Possible options: --child-timeout, --children) (see: l2l search --help)",
    ),
    (
        ["search", "--children", "0"],
        2,
        "error: Invalid value for '--children' / '-n': Input should be greater than or equal to 1 "
        "(see: l2l search --help)",
    ),
    (["runs", "top"], 2, "error: Missing argument 'RUN'. (see: l2l runs top --help)"),
    (
        ["runs", "list", "--limit", "-3", "--storage", "{db}"],
        2,
        "error: Invalid value for '--limit': Input should be greater than or equal to 1 (see: l2l runs list --help)",
    ),
    (
        ["spaces", "show", "mlp", "-S", "hashed=maybe"],
        1,
        "error: search space 'mlp': option hashed must be a boolean (true/false, yes/no, on/off, 1/0), got 'maybe'",
    ),
    (
        ["spaces", "show", "mlp", "-S", "epochs=2.5"],
        1,
        "error: search space 'mlp': option epochs must be an integer, got 2.5",
    ),
    (
        ["search", "--space", "toy", "--strategy", "reinforce", "-C", "lr=fast", "--storage", "{db}"],
        1,
        "error: reinforce setting lr must be a number, got 'fast'",
    ),
    (
        ["search", "--space", "toy", "--strategy", "ppo", "-C", "hidden_size=10.5", "--storage", "{db}"],
        1,
        "error: ppo setting hidden_size must be an integer, got 10.5",
    ),
    (
        ["search", "--space", "toy", "--strategy", "evolution", "-C", "population=many", "--storage", "{db}"],
        1,
        "error: evolution setting population must be an integer, got 'many'",
    ),
    (
        ["search", "--space", "toy", "--config", "{tmp}/many.toml", "--storage", "{db}"],
        1,
        "error: search setting children must be an integer, got 'many'",
    ),
    (  # Optuna's samplers took it and failed with a traceback (numpy's "Seed must be between 0 and 2**32 - 1")
        ["search", "--space", "toy", "--strategy", "tpe", "--seed", "-1", "--storage", "{db}"],
        1,
        "error: seed must be in [0, 2**31), got -1",
    ),
    (  # a config file's executor table is typed by TOML: a wrong type was a TypeError's traceback from Ray's side
        ["search", "--space", "toy", "--config", "{tmp}/four.toml", "--storage", "{db}"],
        1,
        "error: executor option max_concurrent must be an integer or none, got 'four'",
    ),
    (
        ["search", "--space", "toy", "--device", "tpu9", "--executor", "local", "--storage", "{db}"],
        1,
        "error: --device 'tpu9' is not a torch device (cpu, cuda, cuda:1, mps): Invalid device string: 'tpu9'",
    ),
    (
        ["search", "--space", "toy", "--device", "cuda", "--storage", "{db}"],
        1,
        "error: --device cuda on Ray needs --gpus-per-child (1, or 0.5 for two children per GPU): a child runs on "
        "the GPUs Ray assigns it",
    ),
    (  # refused before an embedded Ray instance starts (it started one, seconds, to find no GPU in it)
        ["search", "--space", "toy", "--executor", "ray", "--gpus-per-child", "1", "--storage", "{db}"],
        1,
        "error: --gpus-per-child 1 asked for, but this machine has no GPU (torch sees none) for an embedded Ray "
        "instance; join a cluster that has GPUs with --address HOST:PORT",
    ),
    (
        ["search", "--space", "toy", "--address", "127.0.0.1:1", "--storage", "{db}"],
        1,
        "error: cannot reach the Ray cluster at '127.0.0.1:1': Connection refused; is `ray start --head` running "
        "there?",  # at once: it said "within 10s"
    ),
    (  # it said "Name or service not known"
        ["search", "--space", "toy", "--address", "bogus:host:1", "--storage", "{db}"],
        1,
        "error: --address 'bogus:host:1' is not host:port (or auto)",
    ),
    (
        ["runs", "list", "--storage", "postgresql://::nope"],
        1,
        "error: invalid storage URL 'postgresql://::nope': its port ':nope' is not a number; expected e.g. "
        "sqlite:///l2l.db or "
        "postgresql+psycopg://user:password@host:5432/db",
    ),
    (  # another program's habit: SQLAlchemy knows no "postgres" dialect
        ["runs", "list", "--storage", "postgres://l2l:secret123@db/l2l"],
        1,
        "error: cannot open store postgres://l2l:***@db/l2l: Can't load plugin: sqlalchemy.dialects:postgres; write "
        "it postgresql+psycopg://user:password@host:5432/db (psycopg 3: the driver l2l installs)",
    ),
    (  # no "//" after the scheme: the password is masked all the same
        ["runs", "list", "--storage", "postgres:secret123@db/l2l"],
        1,
        "error: invalid storage URL 'postgres:***@db/l2l': '//' is missing after 'postgres:'; expected e.g. "
        "sqlite:///l2l.db or postgresql+psycopg://user:password@host:5432/db",
    ),
    (  # it said "it has no scheme"
        ["runs", "list", "--storage", "sqlite:l2l.db"],
        1,
        "error: invalid storage URL 'sqlite:l2l.db': '//' is missing after 'sqlite:'; expected e.g. sqlite:///l2l.db "
        "or postgresql+psycopg://user:password@host:5432/db",
    ),
    (  # a host without a scheme is not a scheme missing its "//"
        ["runs", "list", "--storage", "localhost:5432/l2l"],
        1,
        "error: invalid storage URL 'localhost:5432/l2l': it has no scheme; expected e.g. sqlite:///l2l.db or "
        "postgresql+psycopg://user:password@host:5432/db",
    ),
    (  # quoted with a space: the URL shown looked like the example
        ["runs", "list", "--storage", " sqlite:///l2l.db"],
        1,
        "error: invalid storage URL 'sqlite:///l2l.db': it has spaces around it; expected e.g. sqlite:///l2l.db or "
        "postgresql+psycopg://user:password@host:5432/db",
    ),
    (  # `--storage "$URL"` of an unset variable used ./l2l.db
        ["runs", "list", "--storage", ""],
        1,
        "error: --storage is empty: give a store's URL, or leave it out for $L2L_STORAGE or l2l.db here",
    ),
    (  # it said "unable to open database file"
        ["search", "--space", "toy", "-n", "1", "--storage", "sqlite:///{tmp}"],
        1,
        "error: cannot open store sqlite:///{tmp}: '{tmp}' is a folder",
    ),
    (  # a port that is not a number: one line, not a traceback from the driver
        ["runs", "list", "--storage", "postgresql+psycopg://l2l:secret123@db:5432x/l2l"],
        1,
        "error: invalid storage URL 'postgresql+psycopg://l2l:***@db:5432x/l2l': its port '5432x' is not a number; "
        "expected e.g. sqlite:///l2l.db or postgresql+psycopg://user:password@host:5432/db",
    ),
    (
        ["spaces", "show", "{tmp}/noeval.py:NoEval"],
        1,
        "error: search space 'noeval': class NoEval does not define evaluate",
    ),
    (  # `spaces show` printed a traceback ending in AttributeError: 'NoSuper' object has no attribute 'options'
        ["spaces", "show", "{tmp}/noeval.py:NoSuper"],
        1,
        "error: search space 'nosuper': NoSuper.__init__ did not call super().__init__(**options) "
        "(SearchSpace.__init__ keeps the options a run records)",
    ),
    (
        ["spaces", "show", "{tmp}/syntax.py:X"],
        1,
        "error: search space '{tmp}/syntax.py:X': '{tmp}/syntax.py' line 1: syntax error: invalid syntax: def x(:",
    ),
    (
        ["search", "--space", "mlp", "-S", "dataset=nope", "-n", "2", "--executor", "local", "--storage", "{db}"],
        1,
        "error: search space 'mlp': bad options {{'dataset': 'nope'}}: unknown dataset 'nope'; "
        "known: cifar10, digits, mnist1d, synthetic",
    ),
    (  # accepted and ignored: PPO's loss never reads it
        ["search", "--space", "toy", "--strategy", "ppo", "-C", "max_importance=0.5", "--storage", "{db}"],
        1,
        "error: ppo setting max_importance=0.5 is REINFORCE's (it truncates stale children's importance ratios); "
        "PPO's clipped ratio does that job: set clip instead",
    ),
    (  # accepted, and never stopped a child: a lookup has no epochs
        ["search", "--space", "nb201", "--pruner", "median", "--executor", "local", "--storage", "{db}"],
        1,
        "error: --pruner median: space 'nb201' has exact rewards (a lookup or a simulation) and trains nothing, "
        "epoch by epoch, that a pruner could stop",
    ),
    (  # refused before the first child trains, not after it
        ["search", "--space", "mlp", "-C", "reward_transform=mnas(latency,1e5,-0.07)", "--storage", "{db}"],
        1,
        "error: reward transform 'mnas(latency,1e5,-0.07)' needs the cost 'latency', which space 'mlp' does not "
        "report; it reports: params, flops, latency_s, train_time_s",
    ),
    (  # accepted, and every child then failed on a NaN reward
        ["spaces", "show", "toy", "-S", "noise=nan"],
        1,
        "error: search space 'toy': option noise must be a number, got nan",
    ),
    (
        ["spaces", "show", "toy", "-S", "noise=inf"],
        1,
        "error: search space 'toy': bad options {{'noise': inf}}: toy space noise must be a finite sd >= 0, got inf",
    ),
    (  # the options below were taken and changed nothing
        ["spaces", "show", "macro", "-S", "grow_by=5"],
        1,
        "error: search space 'macro': macro option grow_by=5 grows the depth from start_layers; set start_layers",
    ),
    (
        ["spaces", "show", "macro", "-S", "head_width=16"],
        1,
        "error: search space 'macro': macro option head_width=16 is the hashed head's width; add hashed=true",
    ),
    (
        ["spaces", "show", "rnn_cell", "-S", "reward=bpc", "-S", "reward_c=5"],
        1,
        "error: search space 'rnn_cell': rnn_cell option reward_c=5.0 scales reward=ppl; reward=bpc is -bpc itself",
    ),
    (
        ["search", "--space", "mlp", "-S", "hashed_share=batch", "--executor", "local", "--storage", "{db}"],
        1,
        "error: search space 'mlp': mlp option hashed_share=batch is how hashed layers pick; add hashed=true",
    ),
    (
        ["search", "--space", "toy", "-C", "lr=inf", "--storage", "{db}"],
        1,
        "error: reinforce setting lr=inf must be finite (none turns temperature and tanh_constant off)",
    ),  # accepted, then a traceback from the policy's sampling
    (  # the hint dropped the re-evaluation asked for
        ["search", "--space", "toy", "--strategy", "evolution+reeval", "-C", "screen=3", "--storage", "{db}"],
        1,
        "error: screen: settings of screening; use the strategy evolution+screen+reeval",
    ),
    (  # every controller reward was 0.0, or Python's words about a power of zero
        ["search", "--space", "mlp", "-C", "reward_transform=mnas(flops,2e5,-inf)", "--storage", "{db}"],
        1,
        "error: mnas reward needs a finite weight <= 0 (MnasNet uses -0.07), got -inf",
    ),
    (
        ["search", "--space", "toy", "-C", "reward_transform=not_here_tf:fn", "--storage", "{db}"],
        1,
        "error: reward transform 'not_here_tf:fn' cannot be imported: No module named 'not_here_tf' (a module in this "
        "folder needs PYTHONPATH=.)",
    ),
    (
        ["search", "--space", "toy", "-C", "lr=nan", "--storage", "{db}"],
        1,
        "error: reinforce setting lr must be a number, got nan",
    ),
    (  # said "run 1 done" and kept nothing: the next command's in-memory store was another
        ["search", "--space", "toy", "-n", "2", "--executor", "local", "--storage", "sqlite://"],
        1,
        "error: the store sqlite:// is an in-memory SQLite database: nothing recorded would outlive this command; "
        "name a file (sqlite:///l2l.db) or a server",
    ),
    (  # a traceback ending in OverflowError: Python int too large to convert to SQLite INTEGER
        ["search", "--space", "toy", "-n", "99999999999999999999", "--storage", "{db}"],
        2,
        "error: Invalid value for '--children' / '-n': Input should be less than or equal to 2147483647 (see: l2l "
        "search --help)",
    ),
    (
        ["runs", "list", "--limit", "99999999999999999999", "--storage", "{db}"],
        2,
        "error: Invalid value for '--limit': Input should be less than or equal to 2147483647 (see: l2l runs list "
        "--help)",
    ),
    (  # taken, and then no command could name it: `runs best -5` read an option
        ["search", "--space", "toy", "-n", "1", "--executor", "local", "--storage", "{db}", "--name", "-5"],
        1,
        "error: the run name '-5' starts with '-', which commands read as an option",
    ),
    (  # taken, and written raw to the terminal by `runs list`
        ["search", "--space", "toy", "-n", "1", "--executor", "local", "--storage", "{db}", "--name", "\x1b[31mred"],
        1,
        "error: the run name '\\x1b[31mred' holds control characters",
    ),
    (  # validating its 501,500 tokens took 20 s (layers=3000: minutes), and a search could not sample them
        ["spaces", "show", "toy", "-S", "layers=1000"],
        1,
        "error: search space 'toy' (layers=1000): its decisions make a sequence of 501,500 tokens, and l2l takes "
        "at most 100,000 (a controller samples one token at a time)",
    ),
    (  # every evaluation then failed on "invalid learning rate nan", a table of them printed
        ["optimizers", "evaluate", "adam", "--lrs", "nan,0.01"],
        1,
        "error: --lrs must be finite and positive, got 'nan,0.01'",
    ),
    (  # named the Python key alone, not the flag
        ["search", "--space", "toy", "-n", "1", "--executor", "local", "--dp-option", "shards=2", "--storage", "{db}"],
        1,
        "error: executor options dp_options (--dp-option) need --executor ray; the local executor runs children "
        "one at a time in this process and takes none",
    ),
    (  # silently ignored
        ["search", "--space", "toy", "-n", "1", "--executor", "local", "--dashboard-port", "8099", "--storage", "{db}"],
        1,
        "error: --dashboard-port is the port of --dashboard; add --dashboard",
    ),
    (  # "unknown search space" with the registered names
        ["spaces", "show", "{tmp}/noeval.py"],
        1,
        "error: search space '{tmp}/noeval.py': a file needs its class; give path/to/file.py:ClassName",
    ),
    (  # a path without '/' was imported as the module 'many'
        ["spaces", "show", "{tmp}/many.toml:Foo"],
        1,
        "error: search space '{tmp}/many.toml:Foo': '{tmp}/many.toml' is not an importable Python file",
    ),
    (  # a traceback ending in UnicodeDecodeError
        ["search", "--config", "{tmp}/utf16.toml", "--storage", "{db}"],
        1,
        "error: config file '{tmp}/utf16.toml' is not UTF-8 text (TOML is): invalid start byte at byte 0",
    ),
]


@pytest.mark.parametrize(("args", "code", "line"), CASES, ids=[" ".join(c[0][:4]) for c in CASES])
def test_a_mistake_is_one_error_line(
    args: list[str],
    code: int,
    line: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "many.toml").write_text('children = "many"\n')
    (tmp_path / "four.toml").write_text('executor = "ray"\n[executor_options]\nmax_concurrent = "four"\n')
    (tmp_path / "noeval.py").write_text(NO_EVALUATE)
    (tmp_path / "syntax.py").write_text("def x(:\n")
    (tmp_path / "utf16.toml").write_text("children = 2\n", encoding="utf-16")
    fill = {"db": f"sqlite:///{tmp_path / 'runs.db'}", "tmp": str(tmp_path)}
    monkeypatch.setattr(sys, "argv", ["l2l", *(a.format(**fill) for a in args)])
    monkeypatch.setenv("COLUMNS", "400")  # one line, however long
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == code, err
    assert err.strip().splitlines() == [line.format(**fill)]


def test_a_cuda_device_this_machine_lacks_is_refused_before_any_child(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on a machine without a GPU
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setattr(
        sys, "argv", ["l2l", "search", "--space", "toy", "--device", "cuda", "--executor", "local", "--storage", db]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 1
    assert (
        capsys.readouterr().err.strip()
        == "error: --device cuda: this machine has no CUDA device (torch sees none); use --device cpu"
    )
    from l2l.runs.store import Store

    assert Store(db).list_runs(10) == []  # refused before a run was recorded


class OtherService:
    """A TCP server that is no Ray head: it answers whatever it is sent with a line (as Redis does), or closes
    the connection (as PostgreSQL does for bytes that are not its startup message)."""

    def __init__(self, answer: bytes | None) -> None:
        import socket
        import threading

        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.answer = answer
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.recv(64)
                if self.answer is None:  # silent: holds the connection until the client leaves
                    conn.recv(64)
                    continue
                conn.sendall(self.answer)


@pytest.mark.parametrize("answer", [b"-ERR unknown command 'PRI'\r\n", b""], ids=["answers", "closes"])
@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_where_another_service_listens_is_named_at_once(
    answer: bytes, scheme: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    service = OtherService(answer)
    address = f"{scheme}127.0.0.1:{service.port}"
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    monkeypatch.setattr(sys, "argv", ["l2l", "search", "--space", "toy", "--address", address, "--storage", db])
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit) as exit_info:
        main()
    service.sock.close()
    usual = "its Ray client server's port (10001 unless" if scheme else "its port (6379 unless"
    what = (
        f"something else listens on port {service.port} (it does not speak gRPC)"
        if answer
        else f"port {service.port} accepted the connection and closed it without a gRPC answer (another service, "
        "or a tunnel with no head behind it)"
    )
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: '{address}' is not a Ray head: {what}; pass the address `ray start --head` printed there, {usual} "
        "--port was given)"
    ]


@pytest.mark.parametrize("answer", [bytes([0, 0, 0, 4, 0, 0, 0, 0, 0]), None], ids=["settings", "silent"])
def test_a_grpc_server_or_one_that_cannot_be_told_is_left_to_ray(answer: bytes | None) -> None:
    """A server that answers HTTP/2's preface with SETTINGS (a Ray head does: checked against `ray start --head`)
    passes, as does one that says nothing in time (TLS, a slow link): Ray decides there."""
    from l2l.runs.ray_address import reach

    service = OtherService(answer)
    try:
        reach(f"127.0.0.1:{service.port}", timeout=0.5)
    finally:
        service.sock.close()


@pytest.mark.parametrize("group", [[], ["spaces"], ["runs"], ["plot"], ["optimizers"]])
def test_a_group_alone_shows_its_help_once(
    group: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", ["l2l", *group])
    with pytest.raises(SystemExit) as exit_info:
        main()
    out = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert out.count("Usage:") == 1, out
    assert f"l2l {' '.join(group)}".strip() in out


def test_an_option_that_changes_nothing_is_refused_for_a_new_run_but_a_stored_run_still_rebuilds() -> None:
    """Refused in the space's constructor, a run recorded with such options before could no longer resume, retrain
    or be plotted: the refusal belongs to new runs (`SearchSpace.ignored_options`)."""
    from l2l.runs.search import Search, SearchConfig, SearchError
    from l2l.runs.store import Store

    stored = load_space("macro", {"grow_by": 3, "head_width": 16}, validate=True)  # as a stored run rebuilds it
    assert len(stored.ignored_options()) == 2 and stored.decisions()
    with pytest.raises(SearchError, match="macro option head_width=16 is the hashed head's width; add hashed=true"):
        Search.start(Store("sqlite://"), SearchConfig(space="macro", space_options={"head_width": 16}, children=1))


def test_none_and_whole_numbers_are_read_as_the_setting_declares() -> None:
    """`-C grad_clip=none` was refused as "must be a number or none, got 'none'": neither -C nor TOML writes None;
    `-C hidden_size=1e2` was refused as not an integer."""
    from l2l.search_spaces.typed import coerce

    assert coerce("grad_clip", "none", float | None) is None and coerce("x", "NULL", int | None) is None
    assert coerce("hidden_size", 1e2, int) == 100 and isinstance(coerce("hidden_size", 1e2, int), int)
    with pytest.raises(ValueError, match="epochs must be an integer"):
        coerce("epochs", 2.5, int)
    assert coerce("name", "none", str) == "none" and coerce("name", "none", str | None) == "none"  # text stays text


def test_a_run_name_with_brackets_is_shown_and_found_as_typed(tmp_path: Path) -> None:
    """`--name "[bold]x[/bold]"` was stored as typed but shown as "x" (read as markup), so `runs show x` found
    nothing."""
    from typer.testing import CliRunner

    from l2l.runs.cli import app

    storage = ["--storage", f"sqlite:///{tmp_path / 'runs.db'}"]
    name = "[bold]x[/bold]"
    run = CliRunner().invoke(
        app, ["search", "--space", "toy", "-n", "1", "--executor", "local", "-q", "--name", name, *storage]
    )
    assert run.exit_code == 0, run.output
    listed = CliRunner().invoke(app, ["runs", "list", *storage], env={"COLUMNS": "200"})
    shown = CliRunner().invoke(app, ["runs", "show", name, *storage], env={"COLUMNS": "200"})
    assert name in listed.output and shown.exit_code == 0
    assert shown.output.startswith(f"run 1 {name}") and f'"name": "{name}"' in " ".join(shown.output.split())


def test_a_log_folder_that_cannot_be_is_named_with_its_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`L2L_LOG_DIR` set to a file said "cannot use '...': file exists" when Ray first wrote there, naming neither
    the variable nor Ray's logs; a search that never starts Ray is not refused for it."""
    import typer

    from l2l.runs.cli.common import user_errors

    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("L2L_LOG_DIR", str(tmp_path / "afile"))
    with pytest.raises(typer.Exit), user_errors():  # what making the log's folder raises
        (tmp_path / "afile" / "ray-1.log").parent.mkdir(parents=True, exist_ok=True)
    assert capsys.readouterr().err.strip() == (
        f"error: L2L_LOG_DIR={str(tmp_path / 'afile')!r} cannot hold Ray's logs: not a directory"
    )
    args = ["l2l", "search", "--space", "toy", "-n", "1", "--executor", "local", "-q"]
    monkeypatch.setattr(sys, "argv", [*args, "--storage", f"sqlite:///{tmp_path / 'r.db'}"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 0


def test_a_file_named_without_a_folder_is_read_as_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`spaces show c.toml:Foo` said "importing c.toml failed: No module named 'c'" (read as a module)."""
    from l2l.search_spaces.registry import PluginError

    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.toml").write_text("children = 2\n")
    with pytest.raises(PluginError, match=r"^search space 'c.toml:Foo': 'c.toml' is not a Python file; give "):
        load_space("c.toml:Foo")
    with pytest.raises(PluginError, match=r"^search space 'c.py': a file needs its class; give path/to/file.py:"):
        load_space("c.py")
