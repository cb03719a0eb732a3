"""The ``surveil`` command."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from surveil.exceptions import SurveilError

#: errors with a message for the user (bad input or configuration): printed, exit 1, no traceback
USER_ERRORS = (SurveilError,)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="surveil")
def main() -> None:
    """Surveillance of programmatic trading: high-frequency accounts and large sell bursts."""


def check_output(path: Path | None, option: str) -> None:
    """Fail before a run, not after it, when an output file cannot be written: its folder does not exist, or it
    is a folder. ``-`` (standard output) and None (not asked for) are fine."""
    if path is None or str(path) == "-":
        return
    if path.is_dir():
        raise click.ClickException(f"{option} {path}: is a folder, not a file")
    folder = path.parent
    if not folder.is_dir():
        raise click.ClickException(f"{option} {path}: the folder {folder} does not exist (create it first)")
    if not os.access(folder, os.W_OK):
        raise click.ClickException(f"{option} {path}: the folder {folder} is not writable")


def _write_or_fail(write, *args) -> None:
    """An output written at the end of a run: an error writing it is a message, not a traceback."""
    try:
        write(*args)
    except OSError as e:
        raise click.ClickException(f"cannot write {e.filename or args[-1]}: {e.strerror or e}") from None


def _progress(enabled: bool, desc: str):
    if not enabled:
        return None
    from tqdm import tqdm

    return tqdm(unit="ev", unit_scale=True, desc=desc, file=sys.stderr, leave=False)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--accounts", type=click.Path(path_type=Path),
              help="Reference data CSV venue,account,owner,broker[,reported][,valid_from] (lookups as of each "
                   "event's time).")
@click.option("--securities", type=click.Path(path_type=Path),
              help="Securities reference CSV venue,symbol,prev_close,risk_warning[,limit_up,limit_down].")
@click.option("--rules", "rules_file", type=click.Path(path_type=Path), help="Rules file (TOML) overriding thresholds.")
@click.option("--history", type=click.Path(path_type=Path), help="Earlier recommendations (JSONL) for escalation.")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Output JSONL (default: stdout).")
@click.option("--rejects", "rejects_path", type=click.Path(path_type=Path),
              help="Where rejected input goes (default: <out>.rejects.jsonl, or ./surveil-rejects.jsonl).")
@click.option("--strict", is_flag=True, help="Stop with a non-zero exit at the first rejected line or record.")
@click.option("--batch-size", default=65_536, show_default=True, type=click.IntRange(1))
@click.option("--progress/--no-progress", default=None, help="Progress bar (default: when stderr is a terminal).")
@click.option("--report", "report_dir", type=click.Path(path_type=Path),
              help="Also write an HTML report with the evidence charts to this folder (DIR/index.html).")
def replay(inputs, accounts, securities, rules_file, history, out, rejects_path, strict, batch_size, progress,
           report_dir) -> None:
    """Run the engine over event files (JSONL, .jsonl.gz or binary .svb) and write final alerts and
    recommendations, one JSON object per line, sorted by (window_start, rule, subject)."""
    from surveil.replay.run import StrictError, write_records, write_rejects
    from surveil.replay.run import replay as run

    if report_dir is not None:  # fail before a long replay, not after it
        from surveil.report.html import ReportError, check_dir

        try:
            check_dir(report_dir)
        except ReportError as e:
            raise click.ClickException(str(e)) from None

    default_rej = Path(f"{out}.rejects.jsonl") if out and str(out) != "-" else Path("surveil-rejects.jsonl")
    rej_path = rejects_path or default_rej
    check_output(out, "--out")
    check_output(rej_path, "--rejects")
    bar = _progress(sys.stderr.isatty() if progress is None else progress, "replay")
    try:
        res = run(list(inputs), accounts=accounts, rules=rules_file, history=history, strict=strict,
                  batch_size=batch_size, on_batch=bar.update if bar else None, securities=securities)
    except StrictError as e:
        _write_or_fail(write_rejects, [e.reject], rej_path)
        raise click.ClickException(f"{e} (kept in {rej_path})") from None
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    finally:
        if bar:
            bar.close()
    _write_or_fail(write_records, res.records, out)
    _write_or_fail(write_rejects, res.rejects, rej_path)
    msg = res.summary()
    if res.rejects:
        msg += f"; rejects written to {rej_path}"
    if report_dir is not None:
        from surveil.report.html import ReportError, write_report

        try:
            index = write_report(report_dir, res.alerts, res.recommendations, events=res.events,
                                 rejects=len(res.rejects), inputs=[str(p) for p in inputs], summary=res.summary())
        except ReportError as e:
            raise click.ClickException(str(e)) from None
        msg += f"; report written to {index}"
    click.echo(msg, err=True)


@main.command()
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path),
              help="Events file: .jsonl, .jsonl.gz or .svb (binary frames).")
@click.option("--scenario", "scenarios", multiple=True, type=click.Choice(["lingjun", "hft", "daily"]),
              help="Scenario with ground truth (repeatable; default: all).")
@click.option("--events", default=2_000_000, show_default=True, type=click.IntRange(0),
              help="Background events.")
@click.option("--accounts", "n_accounts", default=20_000, show_default=True, type=click.IntRange(10))
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--date", default="2024-02-19", show_default=True, help="Trading day (Asia/Shanghai).")
def simulate(out, scenarios, events, n_accounts, seed, date) -> None:
    """Write a synthetic trading day, its accounts CSV and a labels file of the expected alerts."""
    from surveil.sim import simulate as sim

    check_output(out, "--out")
    try:
        res = sim(out, scenarios=scenarios or ("lingjun", "hft", "daily"), events=events, seed=seed,
                  accounts=n_accounts, date=date, progress=sys.stderr.isatty())
    except (ValueError, OSError) as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"simulate: {res.n_events:,} events -> {res.events_path}\n"
               f"  accounts: {res.accounts_path}\n  labels:   {res.labels_path}", err=True)


@main.command()
@click.argument("src", type=click.Path(path_type=Path))
@click.argument("dst", type=click.Path(path_type=Path))
@click.option("--rejects", "rejects_path", type=click.Path(path_type=Path),
              help="Where rejected input goes (default: <dst>.rejects.jsonl).")
@click.option("--frame-size", default=65_536, show_default=True, type=click.IntRange(1))
def convert(src, dst, rejects_path, frame_size) -> None:
    """Convert between JSON Lines and binary frames (by extension), losslessly."""
    from surveil.events.batch import Registry
    from surveil.events.errors import damage_summary
    from surveil.events.io import EventWriter, check_inputs, output_format, read_events
    from surveil.replay.run import write_rejects

    rejects = []
    reg = Registry()
    rej = rejects_path or Path(f"{dst}.rejects.jsonl")
    check_output(dst, "DST")
    check_output(rej, "--rejects")
    try:
        check_inputs([src])
        output_format(dst)
        with EventWriter(dst, reg, frame_size=frame_size) as w:
            for b in read_events(src, reg, rejects, frame_size):
                w.write(b)
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    except ValueError as e:  # an id the binary format cannot hold (the readers reject longer ones: a safety net)
        raise click.ClickException(f"cannot write {dst}: {e} (binary frames hold ids of at most 24 bytes; "
                                   "docs/events.md)") from None
    except OSError as e:
        raise click.ClickException(f"cannot write {dst}: {e.strerror or e}") from None
    if rejects:
        _write_or_fail(write_rejects, rejects, rej)
    damage = damage_summary(rejects)
    click.echo(f"convert: {w.count:,} events -> {dst}; {len(rejects):,} rejects"
               + (f" ({damage})" if damage else "") + (f" written to {rej}" if rejects else ""), err=True)


@main.command()
@click.option("--markdown", is_flag=True, help="The catalogue as Markdown (docs/rules.md is this output).")
def rules(markdown) -> None:
    """List the rules and every parameter, with its default and where the default comes from."""
    from surveil.actions import RECO_PARAMS
    from surveil.engine.engine import ENGINE_PARAMS
    from surveil.rules import all_rules
    from surveil.rules.catalogue import markdown as catalogue_markdown

    if markdown:
        click.echo(catalogue_markdown(), nl=False)
        return
    for cls in all_rules():
        m = cls.meta
        click.echo(f"[{m.id}]  v{m.version}  key={m.key}  severity={m.severity}  measure={m.measure}\n  {m.title}")
        for p in m.params:
            click.echo(f"  {p.name} = {p.default!r:<24} {'published' if p.published else 'chosen':9}  {p.source}")
    for name, params in (("engine", ENGINE_PARAMS), ("recommendations", RECO_PARAMS)):
        click.echo(f"[{name}]")
        for p in params:
            click.echo(f"  {p.name} = {p.default!r:<24} {'published' if p.published else 'chosen':9}  {p.source}")


@main.command()
@click.option("--markdown", is_flag=True,
              help="The table as Markdown (docs/reliability.md is this output).")
def reliability(markdown) -> None:
    """Run the fault scenarios in-process (bad timestamps, bad records, bad checkpoints, topic names; no broker
    needed, about 10 s) and say what happened in each: events, rejects, whether the alerts equal the clean run's."""
    from surveil.reliability import markdown as as_markdown
    from surveil.reliability import run, text

    groups = run()
    click.echo(as_markdown(groups) if markdown else text(groups), nl=False)


@main.command()
@click.option("--dir", "out_dir", default="out/demo", show_default=True, type=click.Path(path_type=Path))
@click.option("--events", default=1_000_000, show_default=True, type=click.IntRange(0))
@click.option("--seed", default=1, show_default=True, type=int)
def demo(out_dir, events, seed) -> None:
    """Simulate a day with every scenario, replay it in-process and print the alerts (no broker needed)."""
    import orjson

    from surveil.events.schema import ns_to_iso
    from surveil.replay.run import replay as run
    from surveil.replay.run import write_records, write_rejects
    from surveil.rules import rule_class
    from surveil.sim import simulate as sim

    out_dir.mkdir(parents=True, exist_ok=True)
    click.echo(f"1/2 simulating a trading day ({events:,} background events + scenarios lingjun, hft, daily)...")
    s = sim(out_dir / "day.svb", scenarios=("lingjun", "hft", "daily"), events=events, seed=seed,
            progress=sys.stderr.isatty())
    click.echo("2/2 replaying it through the engine...")
    res = run([s.events_path], accounts=s.accounts_path)
    alerts_path = out_dir / "alerts.jsonl"
    write_records(res.records, alerts_path)
    write_rejects(res.rejects, out_dir / "rejects.jsonl")
    click.echo("")
    click.echo(f"{'rule':<17} {'subject':<24} {'value':>18} {'threshold':>14} {'severity':<9} window (Asia/Shanghai)")
    for a in res.alerts:
        subj = a["subject"].get("owner") or f"{a['subject']['venue']}:{a['subject']['account']}"
        ev = a["evidence"]
        when = ns_to_iso(ev.get("at", a["window_start"]))
        fen = a.get("unit") == "fen"  # amounts are integer fen: shown in yuan
        value = f"{a['value'] / 100:,.0f} yuan" if fen else f"{a['value']:,}"
        threshold = a["threshold"] // 100 if fen else a["threshold"]
        click.echo(f"{a['rule']:<17} {subj:<24} {value:>18} {threshold:>14,} {a['severity']:<9} {when[11:23]}")
        cls = rule_class(a["rule"])
        more = cls.describe(a) if cls is not None else None
        if more:
            click.echo(f"{'':<17} {more}")
    click.echo("")
    click.echo(f"{'measure':<18} {'subject':<24} {'days':>4}  rationale")
    for r in res.recommendations:
        subj = r["subject"].get("owner") or f"{r['subject']['venue']}:{r['subject']['account']}"
        click.echo(f"{r['measure']:<18} {subj:<24} {r['duration_days'] or '':>4}  {r['rationale'][:100]}")
    labels = [orjson.loads(x) for x in Path(s.labels_path).read_bytes().splitlines() if x.strip()]
    expected = [x for x in labels if x.get("expected") != "none"]
    found = {(a["rule"], orjson.dumps(a["subject"], option=orjson.OPT_SORT_KEYS)) for a in res.alerts}
    hit = sum((x["rule"], orjson.dumps(x["subject"], option=orjson.OPT_SORT_KEYS)) in found for x in expected)
    click.echo("")
    click.echo(f"ground truth: {hit}/{len(expected)} expected alerts found, {len(res.alerts) - hit} other alerts; "
               f"{len(labels) - len(expected)} negative cases (just under a threshold) checked")
    click.echo(res.summary())
    click.echo(f"files: events {s.events_path}, accounts {s.accounts_path}, labels {s.labels_path}, "
               f"alerts+recommendations {alerts_path}")


@main.command()
@click.option("--bootstrap", help="Kafka bootstrap servers (or SURVEIL_BOOTSTRAP_SERVERS).")
@click.option("--accounts", help="Seed the reference-data topic from this CSV at start (or SURVEIL_ACCOUNTS_CSV).")
@click.option("--securities", help="Seed the securities topic from this CSV at start (or SURVEIL_SECURITIES_CSV).")
@click.option("--rules", "rules_file", help="Rules file (TOML) (or SURVEIL_RULES_FILE).")
@click.option("--group", "group_id", help="Consumer group (or SURVEIL_GROUP_ID).")
@click.option("--web-port", type=click.IntRange(1, 65535),
              help="Port of the worker's web server, /status and /health (or SURVEIL_WEB_PORT; default 6066).")
@click.option("--web-bind", default=None, help="Address of the worker's web server (or SURVEIL_WEB_BIND; 127.0.0.1).")
@click.option("--log-level", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"], case_sensitive=False))
def worker(bootstrap, accounts, securities, rules_file, group_id, web_port, web_bind, log_level) -> None:
    """Run a stream worker: feed topics -> engine -> alert, recommendation, broker and reject topics.

    The worker runs inside a Faust app (signals, logging, web server with /status and /health).
    Settings come from SURVEIL_* environment variables (see README); options override them."""
    from surveil.stream.app import create_app, run
    from surveil.stream.settings import Settings, SettingsError

    try:
        s = Settings.from_env(bootstrap_servers=bootstrap, accounts_csv=accounts, rules_file=rules_file,
                              group_id=group_id, web_port=web_port, web_bind=web_bind, securities_csv=securities)
        app = create_app(s)
    except (SettingsError, *USER_ERRORS) as e:
        raise click.ClickException(str(e)) from None
    run(app, loglevel=log_level)  # exits: 0 after SIGTERM/SIGINT, non-zero when the worker crashed


@main.group()
def refdata() -> None:
    """Reference data (the accounts file): check a file, compare two."""


def _load_ref(path: Path, rejects: list):
    from surveil.engine.refdata import RefData

    try:
        return RefData.load_csv(path, rejects)
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None


def _row_text(r) -> str:
    from surveil.engine.refdata import valid_from_text

    since = valid_from_text(r.valid_from) or "always"
    rep = "-" if r.reported is None else str(r.reported).lower()
    return f"since {since}: owner {r.owner or '-'}, broker {r.broker or '-'}, reported {rep}"


@refdata.command("check")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--history", is_flag=True, help="Print every account's rows (its history), in validity order.")
def refdata_check(file, history) -> None:
    """Validate an accounts file (columns, ids, valid_from values, validity order, conflicts): exit 1 when a
    row is rejected or two rows of an account conflict (both named)."""
    rejects: list = []
    ref = _load_ref(file, rejects)
    rows = sum(len(h) for h in ref.histories.values())
    if history:
        for venue, account, r in ref.rows():
            click.echo(f"{venue}:{account}\t{_row_text(r)}")
    click.echo(f"{file}: {len(ref.histories)} accounts, {rows} rows, {len(ref.timed)} accounts with validity, "
               f"{len(rejects)} rejected rows", err=history)
    for r in rejects:
        click.echo(f"{r.source} line {r.location}: {r.field}={r.value!r}: {r.reason}", err=True)
    if rejects:
        sys.exit(1)


@refdata.command("diff")
@click.argument("old", type=click.Path(path_type=Path))
@click.argument("new", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per account instead of text.")
def refdata_diff(old, new, as_json) -> None:
    """The accounts whose owner, broker or reporting status differ between two accounts files, and from when
    (the earliest time the answers differ; "always": before any valid_from)."""
    import orjson

    from surveil.engine.refdata import diff

    rejects: list = []
    changes = diff(_load_ref(old, rejects), _load_ref(new, rejects))
    for r in rejects:
        click.echo(f"{r.source} line {r.location}: {r.field}={r.value!r}: {r.reason} (row ignored)", err=True)
    for c in changes:
        if as_json:
            click.echo(orjson.dumps(c).decode())
            continue
        parts = []
        for f in c["changed"]:
            a = (c["old"] or {}).get(f)
            b = (c["new"] or {}).get(f)
            parts.append(f"{f} {a if a is not None else '-'} -> {b if b is not None else '-'}")
        click.echo(f"{c['venue']}:{c['account']} from {c['from'] or 'always'}: {', '.join(parts)}")
    click.echo(f"{len(changes)} accounts changed", err=True)


@main.group()
def console() -> None:
    """The live console's users (docs/console.md#logins-and-roles)."""


@console.group("user")
def console_user() -> None:
    """Add, change, remove and list the users of a console users file (SURVEIL_CONSOLE_USERS_FILE)."""


_USERS_FILE = click.option("--file", "users_file", required=True, type=click.Path(path_type=Path),
                           help="The users file (TOML; created if missing, mode 0600).")


@console_user.command("add")
@_USERS_FILE
@click.option("--name", required=True, help="User name: 1-64 letters, digits or . _ @ -")
@click.option("--role", required=True, type=click.Choice(["desk", "broker", "admin"]),
              help="desk: every alert; broker: one member firm's; admin: the desk's and the user list.")
@click.option("--broker", help="The member firm a broker user sees (its broker id, e.g. B017).")
@click.option("--password-stdin", is_flag=True,
              help="Read the password from standard input (one line) instead of a prompt.")
@click.option("--no-password", is_flag=True, help="No password: the user logs in through the proxy only.")
@click.option("--replace", is_flag=True, help="Change an existing user (role, broker, password).")
def console_user_add(users_file, name, role, broker, password_stdin, no_password, replace) -> None:
    """Add a user; only the password's argon2 hash is written. The running workers read the file again by
    themselves."""
    from surveil.web.auth import add_user

    if role == "broker" and not broker:
        raise click.UsageError("--role broker needs --broker <member firm id>")
    if role != "broker" and broker:
        raise click.UsageError(f"--broker is only for --role broker (not {role})")
    if no_password:
        password = ""
    elif password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise click.ClickException("no password on standard input")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        u = add_user(users_file, name, role, broker, password, replace=replace)
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{users_file}: {'changed' if replace else 'added'} {u.name} ({u.role}"
               f"{' ' + u.broker if u.broker else ''})", err=True)


@console_user.command("remove")
@_USERS_FILE
@click.option("--name", required=True)
def console_user_remove(users_file, name) -> None:
    """Remove a user (their sessions end at their next request)."""
    from surveil.web.auth import remove_user

    try:
        remove_user(users_file, name)
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"{users_file}: removed {name}", err=True)


@console_user.command("list")
@_USERS_FILE
def console_user_list(users_file) -> None:
    """The users: name, role, member firm, whether they have a password."""
    from surveil.web.auth import load_users

    try:
        users = load_users(users_file)
    except USER_ERRORS as e:
        raise click.ClickException(str(e)) from None
    for u in sorted(users.values(), key=lambda u: u.name):
        click.echo(f"{u.name}\t{u.role}\t{u.broker or '-'}\t{'password' if u.password_hash else 'proxy only'}")


def _register() -> None:
    from surveil.kafka_local import kafka

    main.add_command(kafka)
    from surveil.acl import acl

    main.add_command(acl)
    try:
        from surveil.feed import feed_command
    except ImportError:  # pragma: no cover - feed is being written
        return
    main.add_command(feed_command, name="feed")


_register()

if __name__ == "__main__":
    main()
