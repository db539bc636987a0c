"""The ``pasar`` command. Every command whose output a script may read takes ``--json``."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import asdict
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar
from uuid import uuid4

import click
import psycopg
from psycopg.rows import dict_row

from pasar.config import Settings, get_settings
from pasar.db.migrate import current_revision, migrate
from pasar.db.pool import Database, tenant_transaction
from pasar.db.urls import DatabaseUrls, database_urls
from pasar.errors import DomainError
from pasar.secrets import ConfigurationError
from pasar.tenancy import service as tenancy
from pasar.tenancy.models import Plan, Principal, ProvisionedTenant

if TYPE_CHECKING:
    import polars as pl

P = ParamSpec("P")
R = TypeVar("R")


def _fail_cleanly(command: Callable[P, R]) -> Callable[P, R]:
    """Expected failures print one clear line and exit 1, never a traceback."""
    from pasar.db.embedded import EmbeddedPostgresError

    @wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except (EmbeddedPostgresError, ConfigurationError) as exc:
            raise click.ClickException(str(exc)) from exc
        except DomainError as exc:
            raise click.ClickException(f"{exc.code}: {exc.message}") from exc
        except psycopg.OperationalError as exc:
            raise click.ClickException(f"cannot reach the database: {exc}") from exc

    return wrapper


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data, default=str) if as_json else text)


def _run(coroutine: Coroutine[Any, Any, R]) -> R:
    return asyncio.run(coroutine)


@click.group()
def main() -> None:
    """Pasar: multi-tenant AI trading data platform for the Indonesian market."""


# pasar db ---------------------------------------------------------------------------------------------------


@main.group()
def db() -> None:
    """The database: the embedded cluster under PASAR_HOME, or the server at PASAR_DATABASE_URL."""


def _cluster(settings: Settings) -> Any:
    from pasar.db.embedded import EmbeddedCluster

    if not settings.embedded:
        raise click.ClickException("PASAR_DATABASE_URL is set: the database is external, not managed by pasar")
    return EmbeddedCluster(settings.home, bin_dir=settings.pg_bin_dir)


def _status_document(status: Any) -> dict[str, Any]:
    document = asdict(status)
    document["data_dir"] = str(document["data_dir"])
    return document


@db.command("start")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def db_start(as_json: bool) -> None:
    """Start the embedded cluster (idempotent; recovers a stale pid file or a crash)."""
    status = _cluster(get_settings()).start()
    _emit(as_json, _status_document(status), f"running on 127.0.0.1:{status.port} (pid {status.pid})")


@db.command("stop")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def db_stop(as_json: bool) -> None:
    """Stop the embedded cluster."""
    status = _cluster(get_settings()).stop()
    _emit(as_json, _status_document(status), "stopped")


@db.command("status")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def db_status(as_json: bool) -> None:
    """Whether the embedded cluster runs, and where."""
    status = _cluster(get_settings()).status()
    text = f"running on 127.0.0.1:{status.port} (pid {status.pid})" if status.running else "not running"
    _emit(as_json, _status_document(status), text)
    if not status.running:
        sys.exit(3)


@db.command("url")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def db_url(as_json: bool) -> None:
    """The owner's connection URL (starts the embedded cluster if needed)."""
    url = database_urls(get_settings()).owner
    _emit(as_json, {"url": url}, url)


@db.command("migrate")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def db_migrate(as_json: bool) -> None:
    """Apply the migrations up to the newest (idempotent)."""
    urls = database_urls(get_settings())
    migrate(urls)
    revision = current_revision(urls)
    _emit(as_json, {"revision": revision}, f"database at revision {revision}")


# pasar tenant / operator ------------------------------------------------------------------------------------


def _with_database(urls: DatabaseUrls, work: Callable[[Database], Awaitable[R]]) -> R:
    async def run() -> R:
        database = Database(urls.app, min_size=1, max_size=2)
        await database.open()
        try:
            return await work(database)
        finally:
            await database.close()

    return _run(run())


async def _provision(database: Database, name: str, plan: Plan) -> ProvisionedTenant:
    principal = Principal.system(uuid4())
    async with tenant_transaction(principal, database=database) as conn:
        return await tenancy.provision_tenant(conn, principal, name=name, plan=plan)


def _provisioned_document(made: ProvisionedTenant) -> dict[str, Any]:
    return {
        "tenant_id": str(made.tenant.id),
        "slug": made.tenant.slug,
        "admin_user": made.admin_user.username,
        "admin_password": made.admin_password,
        "api_key": made.api_key.secret,
    }


@main.group()
def tenant() -> None:
    """Tenants."""


@tenant.command("create")
@click.argument("name")
@click.option("--plan", type=click.Choice([plan.value for plan in Plan]), default=Plan.basic.value, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def tenant_create(name: str, plan: str, as_json: bool) -> None:
    """Create a tenant with an admin user and an API key (shown once)."""
    urls = database_urls(get_settings())
    migrate(urls)
    made = _with_database(urls, lambda database: _provision(database, name, Plan(plan)))
    document = _provisioned_document(made)
    _emit(
        as_json,
        document,
        f"tenant {made.tenant.slug} ({made.tenant.id})\n"
        f"admin user: {made.admin_user.username}  password: {made.admin_password}\n"
        f"API key (shown once): {made.api_key.secret}",
    )


@main.group()
def operator() -> None:
    """Platform operators (not a tenant role)."""


@operator.command("create")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def operator_create(name: str, as_json: bool) -> None:
    """Create a platform operator and print its API key (shown once)."""
    urls = database_urls(get_settings())
    migrate(urls)
    operator_id, secret = _run(_create_operator(urls, name))
    _emit(as_json, {"operator_id": str(operator_id), "api_key": secret}, f"operator {name}\nAPI key: {secret}")


async def _create_operator(urls: DatabaseUrls, name: str) -> tuple[Any, str]:
    async with await psycopg.AsyncConnection.connect(urls.owner, row_factory=dict_row) as conn:
        return await tenancy.create_operator(conn, name=name)


# pasar api / demo -------------------------------------------------------------------------------------------


def _serve(settings: Settings, host: str, port: int, workers: int) -> None:
    import uvicorn

    os.environ.setdefault("PASAR_HOME", str(settings.home))
    uvicorn.run(
        "api.app:create_app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


@main.command("api")
@click.option("--host", default=None, help="Default: PASAR_API_HOST (127.0.0.1)")
@click.option("--port", type=int, default=None, help="Default: PASAR_API_PORT (8000)")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@_fail_cleanly
def api_command(host: str | None, port: int | None, workers: int) -> None:
    """Serve the API until interrupted."""
    settings = get_settings()
    if settings.embedded:
        migrate(database_urls(settings))  # the embedded database is ours to keep current
    _serve(settings, host or settings.api_host, port or settings.api_port, workers)


DEMO_TRAINING_SYMBOLS = ("BBCA", "BBRI", "BMRI", "TLKM", "ASII")


def _demo_trading_summary(trading: dict[str, Any]) -> str:
    """Which strategy placed the bot's orders, over every tenant (see :mod:`pasar.trading.bot`)."""
    placed: Counter[str] = Counter()
    signals: Counter[str] = Counter()
    for report in trading["tenants"]:
        placed.update(report["strategies"])
        signals.update(report["signals"])
    models = sorted({report["model"] for report in trading["tenants"]} - {None})
    if not models:
        return f"the bot traded on its rules ({placed['rules']} orders)"
    directions = ", ".join(f"{signals[direction]} {direction}" for direction in ("long", "flat", "short"))
    summary = (
        f"the bot traded on the signals of {', '.join(models)} ({signals.total()} signals: {directions}; "
        f"{placed['signal']} orders)"
    )
    if placed["rules"]:
        summary += f", and on its rules where a symbol had no signal ({placed['rules']} orders)"
    return summary


@main.command("demo")
@click.option("--serve/--no-serve", default=True, help="Serve the API and the Dagster UI afterwards, or exit")
@click.option("--host", default=None)
@click.option("--port", type=int, default=None)
@click.option("--dagster-port", type=int, default=3000, show_default=True)
@click.option("--synthetic-days", type=click.IntRange(1, 250), default=10, show_default=True)
@click.option("--docs-port", type=int, default=8080, show_default=True, help="dbt docs for analysts")
@click.option("--train/--no-train", default=True, help="Train a first champion model and build the dbt marts")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def demo(
    serve: bool,
    host: str | None,
    port: int | None,
    dagster_port: int,
    docs_port: int,
    synthetic_days: int,
    train: bool,
    as_json: bool,
) -> None:
    """Set up the embedded platform: demo tenants, market data; then serve the API and the Dagster UI."""
    from pasar import demo as demo_setup

    settings = get_settings()
    host = host or settings.api_host
    port = port or settings.api_port
    urls = database_urls(settings)
    migrate(urls)
    document = _with_database(
        urls, lambda database: demo_setup.ensure_demo(settings, urls, database, host=host, port=port)
    )
    document["market"] = demo_setup.load_market_data(urls, synthetic_days=synthetic_days)
    scorer = None
    if train:
        from pasar.signals.training import train_and_promote
        from serving.predictor import Predictor  # the CLI composes the apps: pasar's domain code never imports serving

        model = train_and_promote(settings, urls, symbols=DEMO_TRAINING_SYMBOLS, timeframe="1m", trials=4)
        document["model"] = {key: model.get(key) for key in ("model_name", "version", "promoted", "family")}
        scorer = Predictor.from_settings(settings)
        scorer.load()  # the champion just trained (or an earlier, better one): the bot trades on its signals
    from pasar.trading.bot import run_demo_trading

    tenant_ids = [entry["tenant_id"] for entry in document["tenants"]]
    document["trading"] = run_demo_trading(settings, urls, tenant_ids, 3, scorer=scorer)
    if train:
        from pasar.analytics.dbt import run_dbt

        document["dbt_build_ok"] = run_dbt(["build"], settings, timeout=900).returncode == 0  # marts see the trades
    document["dagster_url"] = f"http://{host}:{dagster_port}" if serve else None
    demo_setup.write_document(settings, document)
    lines = [
        f"Pasar demo — API {document['api_url']}  (docs: {document['docs_url']})",
        f"written to {Path(settings.home) / 'demo.json'}",
    ]
    for entry in document["tenants"]:
        lines.append(
            f"  tenant {entry['slug']}: user {entry['username']} / {entry['password']}  API key {entry['api_key']}"
        )
    lines.append(f"  operator API key: {document['operator_api_key']}")
    market = document["market"]
    lines.append(f"  market data: {market['bars']} bars of {market['instruments']} instruments")
    lines.append(f"  paper trading: {_demo_trading_summary(document['trading'])} (see /v1/portfolio, /v1/orders)")
    if "model" in document:
        model = document["model"]
        lines.append(f"  signal model: {model['model_name']} v{model['version']} ({model['family']}), champion")
    if serve:
        lines.append(f"  Dagster UI: {document['dagster_url']}  (assets, lineage, checks; starting in the background)")
        if train:
            lines.append(f"  dbt docs: http://{host}:{docs_port}")
    lines.append(f"Try: curl -s -H 'X-API-Key: {document['tenants'][0]['api_key']}' {document['api_url']}/v1/me")
    _emit(as_json, document, "\n".join(lines))
    if serve:
        from pasar.analytics.dbt import serve_docs

        helpers = [demo_setup.start_dagster_ui(settings, host=host, port=dagster_port)]
        if train:
            helpers.append(serve_docs(settings, docs_port, host=host))
        try:
            _serve(settings, host, port, 1)
        finally:
            for process in helpers:
                process.terminate()
                process.wait(timeout=30)


# pasar ingest -----------------------------------------------------------------------------------------------


@main.group()
def ingest() -> None:
    """Load market data (the same code the Dagster assets run)."""


def _etl_connection(settings: Settings) -> psycopg.Connection[Any]:
    urls = database_urls(settings)
    if settings.embedded:
        migrate(urls)
    return psycopg.connect(urls.etl, autocommit=True)


def _reports_document(reports: list[Any]) -> dict[str, Any]:
    return {
        "rows_loaded": sum(report.rows_in for report in reports),
        "rows_written": sum(report.rows_written for report in reports),
        "batches": len(reports),
        "symbols": sorted({symbol for report in reports for symbol in report.symbols}),
        "new_instruments": sorted({symbol for report in reports for symbol in report.new_instruments}),
        "rejected": [],
    }


@ingest.command("bundled")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def ingest_bundled(as_json: bool) -> None:
    """The real historical data shipped with a PyPI package (GOOG daily, EURUSD hourly, BTCUSD monthly)."""
    from pasar.market import service as market

    with _etl_connection(get_settings()) as conn:
        document = _reports_document(market.ingest_bundled(conn))
    _emit(as_json, document, f"loaded {document['rows_loaded']} bars of {', '.join(document['symbols'])}")


@ingest.command("synthetic")
@click.option("--symbols", type=click.IntRange(1, 5_000), default=30, show_default=True)
@click.option("--days", type=click.IntRange(1, 5_000), default=20, show_default=True)
@click.option("--timeframe", type=click.Choice(["1m", "5m", "15m", "30m", "1h", "1d"]), default="1m", show_default=True)
@click.option("--seed", type=int, default=7, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def ingest_synthetic(symbols: int, days: int, timeframe: str, seed: int, as_json: bool) -> None:
    """A seeded synthetic IDX market: ticks, lots, sessions, holidays and auto-rejection bands respected."""
    from pasar.market import service as market

    with _etl_connection(get_settings()) as conn:
        reports = market.ingest_synthetic(conn, symbols=symbols, days=days, timeframe=timeframe, seed=seed)
    document = _reports_document(reports)
    _emit(as_json, document, f"loaded {document['rows_loaded']} bars over {len(reports)} trading days")


@ingest.command("landing")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def ingest_landing(as_json: bool) -> None:
    """Every CSV/Parquet file in PASAR_HOME/landing: loaded whole, or moved to rejected/ with its reason."""
    from pasar.market import service as market

    settings = get_settings()
    with _etl_connection(settings) as conn:
        report = market.ingest_landing(conn, Path(settings.home))
    document = {
        "rows_loaded": report.rows_loaded,
        "files_loaded": [entry["file"] for entry in report.loaded],
        "rejected": report.rejected,
    }
    lines = [f"loaded {report.rows_loaded} bars from {len(report.loaded)} files"]
    lines += [f"rejected {entry['file']}: {entry['reason']}" for entry in report.rejected]
    _emit(as_json, document, "\n".join(lines))


# pasar backtest ---------------------------------------------------------------------------------------------


def _backtest_zone(symbol: str, parsed_zone: str | None) -> str:
    """The zone in which the bars' calendar days are counted: the one a file's naive timestamps were read in, else
    the instrument's exchange time zone (UTC for a symbol that is not a valid instrument code)."""
    from pasar.market.exchange import default_instrument

    if parsed_zone:
        return parsed_zone
    try:
        return default_instrument(symbol).trading_calendar().timezone.key
    except ValueError:
        return "UTC"


def _backtest_file(path: Path, expected_format: str) -> tuple[pl.DataFrame, str, str, str]:
    """(bars, symbol, timeframe, time zone) of a CSV/Parquet file read by the landing folder's parser."""
    from pasar.market.sources.landing import LandingFileError, parse_file

    try:
        parsed = parse_file(path)
    except LandingFileError as exc:
        raise click.ClickException(f"{path.name}: {exc.reason}") from None
    if parsed.file_format != expected_format:
        option = "--parquet" if parsed.file_format == "parquet" else "--csv"
        raise click.ClickException(f"{path.name} is a {parsed.file_format} file: pass it with {option}")
    if len(parsed.symbols) != 1:
        raise click.ClickException(
            f"{path.name} holds {len(parsed.symbols)} symbols ({', '.join(parsed.symbols)}); a backtest needs the "
            "bars of one symbol: split the file"
        )
    symbol = parsed.symbols[0]
    return parsed.frame, symbol, parsed.timeframe.value, _backtest_zone(symbol, parsed.timezone)


def _backtest_database(symbol: str, timeframe: str) -> tuple[pl.DataFrame, str]:
    """(bars, time zone) of a stored series, read as pasar_etl (the embedded database is migrated first)."""
    from pasar.market import repository
    from pasar.market.exchange import default_instrument

    with _etl_connection(get_settings()) as conn:
        bars = repository.read_bars_frame(conn, symbols=[symbol], timeframe=timeframe, start=None, end=None)
    if bars.is_empty():
        raise click.ClickException(f"no {timeframe} bars of {symbol} in the database (load them with pasar ingest)")
    try:
        zone = default_instrument(symbol).trading_calendar().timezone.key
    except ValueError:
        zone = "UTC"
    return bars, zone


@main.command("backtest")
@click.option("--strategy", type=click.Choice(["sma_cross"]), default="sma_cross", show_default=True)
@click.option("--fast", type=click.IntRange(min=1), default=10, show_default=True, help="Fast SMA length (bars)")
@click.option("--slow", type=click.IntRange(min=2), default=20, show_default=True, help="Slow SMA length (bars)")
@click.option("--cash", type=float, default=10_000.0, show_default=True, help="Starting equity (> 0)")
@click.option(
    "--commission", type=float, default=0.002, show_default=True, help="Fraction of traded value per side, [0, 0.1)"
)
@click.option("--symbol", help="Read the stored bars of this instrument from the database")
@click.option(
    "--timeframe",
    type=click.Choice(["1m", "5m", "15m", "30m", "1h", "1d", "1w", "1mo"]),
    default="1d",
    show_default=True,
    help="The stored series to read with --symbol",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An OHLCV CSV file (one symbol)",
)
@click.option(
    "--parquet",
    "parquet_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="An OHLCV Parquet file (one symbol)",
)
@click.option(
    "--lot-size", type=click.IntRange(min=1), help="Units per lot (default: the instrument's with --symbol, else 1)"
)
@click.option("--short/--no-short", default=True, show_default=True, help="Reverse into a short on a cross down")
@click.option("--report/--no-report", default=True, show_default=True, help="Write the HTML report")
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as one JSON object")
@_fail_cleanly
def backtest(
    strategy: str,
    fast: int,
    slow: int,
    cash: float,
    commission: float,
    symbol: str | None,
    timeframe: str,
    csv_path: Path | None,
    parquet_path: Path | None,
    lot_size: int | None,
    short: bool,
    report: bool,
    as_json: bool,
) -> None:
    """Backtest a strategy on one instrument's bars: decisions on a bar's close fill at the next open, all-in.

    The bars come from the database (--symbol, --timeframe) or from a CSV/Parquet file in any layout the landing
    folder accepts (--csv, --parquet). The HTML report goes beside the file
    (<file stem>_backtest_<strategy>_<fast>_<slow>.html), or to PASAR_HOME/reports/backtests/ for --symbol
    (<SYMBOL>_<timeframe>_backtest_...).
    """
    from models_ml.backtest import BacktestError, run_backtest, sma_cross, stats_table, write_report

    sources = [
        name for name, given in (("--symbol", symbol), ("--csv", csv_path), ("--parquet", parquet_path)) if given
    ]
    if len(sources) != 1:
        raise click.UsageError(
            "give exactly one of --symbol, --csv and --parquet" + (f" (got {', '.join(sources)})" if sources else "")
        )
    if fast >= slow:
        raise click.BadParameter(
            f"the fast SMA ({fast}) must be shorter than the slow SMA ({slow})", param_hint="--fast"
        )
    if not (cash > 0 and cash < float("inf")):
        raise click.BadParameter(f"{cash:g} is not a positive amount", param_hint="--cash")
    if not 0 <= commission < 0.1:
        raise click.BadParameter(f"{commission:g} is not a fraction in [0, 0.1)", param_hint="--commission")

    from pasar.market.exchange import default_instrument
    from pasar.market.sources.landing import normalize_symbol

    if symbol is not None:
        name = normalize_symbol(symbol)
        try:
            instrument_lot = default_instrument(name).lot_size
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--symbol") from None
        bars, zone = _backtest_database(name, timeframe)
        lot = lot_size or instrument_lot
        report_dir = Path(get_settings().home) / "reports" / "backtests"
        stem = f"{name}_{timeframe}"
    else:
        path = csv_path or parquet_path
        assert path is not None
        bars, name, timeframe, zone = _backtest_file(path, "csv" if csv_path else "parquet")
        lot = lot_size or 1
        report_dir = path.parent
        stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    try:
        result = run_backtest(
            bars,
            sma_cross(fast, slow, allow_short=short),
            cash=cash,
            commission=commission,
            lot_size=lot,
            timezone=zone,
        )
    except BacktestError as exc:
        raise click.ClickException(str(exc)) from None
    stats = result.stats()
    report_path = None
    if report:
        target = report_dir / f"{stem}_backtest_{strategy}_{fast}_{slow}.html"
        try:
            report_path = write_report(result, target, title=f"{name} {timeframe} — {result.strategy}")
        except OSError as exc:
            raise click.ClickException(f"cannot write the report {target}: {exc.strerror or exc}") from None
    lines = [f"{name} {timeframe} {result.strategy}  cash {cash:,.2f}  commission {commission:g}  lot {lot}"]
    lines += [f"  {label:<24}{value:>28}" for label, value in stats_table(stats)]
    if result.open_position is not None:
        held = result.open_position
        lines.append(f"  open at the end: {held.size} from {held.entry_ts.isoformat()} at {held.entry_price:g}")
    if result.skipped_orders:
        lines.append(f"  {result.skipped_orders} orders not filled: equity below one lot of {lot}")
    if report_path is not None:
        lines.append(f"report: {report_path}")
    _emit(as_json, stats, "\n".join(lines))


# pasar tenant analyst-login / reports / analytics -----------------------------------------------------------


@tenant.command("analyst-login")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def tenant_analyst_login(tenant_name: str, as_json: bool) -> None:
    """Create a read-only database login for BI tools, confined to TENANT (slug or id) by row-level security, and
    print its connection URL (the password is shown once). Runs as the database owner."""
    from pasar.analytics.logins import create_analyst_login

    urls = database_urls(get_settings())
    migrate(urls)
    with psycopg.connect(urls.owner) as conn:
        login = create_analyst_login(conn, urls.owner, tenant_name)
    _emit(
        as_json,
        login.document(),
        f"analyst login {login.role_name} for tenant {login.tenant_slug} (read-only, schema analytics)\n"
        f"URL (shown once): {login.url}",
    )


@tenant.command("analyst-logout")
@click.argument("tenant_name", metavar="TENANT")
@click.option("--login", "role_name", default=None, help="Only this login (its role); default: every one of TENANT")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def tenant_analyst_logout(tenant_name: str, role_name: str | None, as_json: bool) -> None:
    """Revoke TENANT's analyst logins (or only --login ROLE): each role is dropped and its open sessions are ended,
    so it can no longer connect. Runs as the database owner."""
    from pasar.analytics.logins import revoke_analyst_logins

    urls = database_urls(get_settings())
    migrate(urls)
    with psycopg.connect(urls.owner) as conn:
        revoked = revoke_analyst_logins(conn, tenant_name, role_name=role_name)
    logins = ", ".join(revoked.role_names) or "no analyst login"
    _emit(
        as_json,
        revoked.document(),
        f"tenant {revoked.tenant_slug}: revoked {logins} ({revoked.sessions_ended} open session(s) ended)",
    )


@main.group()
def reports() -> None:
    """Compliance reports (HTML with charts, and CSV files) under PASAR_HOME/reports/<tenant>/<period>/."""


@reports.command("generate")
@click.option("--tenant", "tenant_name", required=True, help="Tenant slug or id")
@click.option("--period", required=True, help="The month, YYYY-MM (WIB)")
@click.option("--force", is_flag=True, help="Render even when the inputs fail their checks (they are listed)")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def reports_generate(tenant_name: str, period: str, force: bool, as_json: bool) -> None:
    """Render one tenant's compliance report for one month from the dbt marts (build them first:
    `pasar analytics build`). Read as pasar_app under the tenant's row-level security."""
    from pasar.analytics.logins import resolve_tenant
    from pasar.compliance import service as compliance
    from pasar.compliance.models import Period
    from pasar.errors import Conflict

    settings = get_settings()
    urls = database_urls(settings)
    if settings.embedded:
        migrate(urls)
    month = Period.parse(period)
    with psycopg.connect(urls.etl) as conn:
        tenant_id, _ = resolve_tenant(conn, tenant_name)

    async def render(database: Database) -> dict[str, Any]:
        principal = Principal.system(tenant_id)
        async with tenant_transaction(principal, database=database) as conn:
            return await compliance.generate_report(
                conn, principal, period=month, home=Path(settings.home), generated_by="cli", force=force
            )

    try:
        report = _with_database(urls, render)
    except Conflict as exc:
        problems = "\n".join(f"  - {problem}" for problem in exc.details or [])
        raise click.ClickException(f"{exc.message} (use --force to render anyway):\n{problems}") from exc
    document = {
        "id": str(report["id"]),
        "tenant_id": str(tenant_id),
        "tenant": report["tenant_slug"],
        "period": report["period"],
        "directory": report["directory"],
        "files": report["files"],
        "checksum": report["checksum"],
        "summary": report["summary"],
    }
    _emit(as_json, document, f"report {document['tenant']} {document['period']}: {document['directory']}/report.html")


@main.group()
def analytics() -> None:
    """The dbt project (dbt_project/): marts, compliance reports, docs."""


@analytics.command("build")
@click.option("--full-refresh", is_flag=True, help="Rebuild incremental models from scratch")
@click.option("--select", "selection", default=None, help="A dbt selection, e.g. marts.compliance")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def analytics_build(full_refresh: bool, selection: str | None, as_json: bool) -> None:
    """`dbt build` as pasar_etl (models, tests, unit tests), offline."""
    from pasar.analytics import dbt

    settings = get_settings()
    if settings.embedded:
        migrate(database_urls(settings))
    args = ["build", *(["--full-refresh"] if full_refresh else []), *(["--select", selection] if selection else [])]
    result = dbt.run_dbt(args, settings)
    summary = next((line for line in reversed(result.stdout.splitlines()) if "Done." in line), "")
    if result.returncode != 0:
        raise click.ClickException(f"dbt build failed (exit {result.returncode}):\n{result.stdout[-4000:]}")
    _emit(as_json, {"returncode": result.returncode, "summary": summary.strip()}, summary.strip() or "dbt build done")


# pasar train / serve-model ----------------------------------------------------------------------------------


def _symbol_list(values: tuple[str, ...]) -> list[str] | None:
    symbols = [symbol.strip() for value in values for symbol in value.split(",") if symbol.strip()]
    return symbols or None


@main.command("train")
@click.option(
    "--symbols", multiple=True, help="Symbols to train on, comma-separated or repeated (default: all at the timeframe)"
)
@click.option("--timeframe", type=click.Choice(["1m", "5m", "15m", "30m", "1h", "1d"]), default="1m", show_default=True)
@click.option("--trials", type=click.IntRange(1, 1_000), default=20, show_default=True, help="AutoML trials")
@click.option("--horizon", type=click.IntRange(1, 10_000), default=15, show_default=True, help="Label horizon, bars")
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--families", default=None, help="Model families, comma-separated (default: all)")
@click.option("--json", "as_json", is_flag=True)
@_fail_cleanly
def train_command(
    symbols: tuple[str, ...],
    timeframe: str,
    trials: int,
    horizon: int,
    seed: int,
    families: str | None,
    as_json: bool,
) -> None:
    """Train the signal model on the stored bars (AutoML tracked in MLflow), evaluate it out of sample, export and
    register it, and promote it to `champion` only if it beats the current one."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    from pasar.signals.training import train_and_promote

    settings = get_settings()
    urls = database_urls(settings)
    if settings.embedded:
        migrate(urls)
    try:
        document = train_and_promote(
            settings,
            urls,
            symbols=_symbol_list(symbols),
            timeframe=timeframe,
            trials=trials,
            horizon=horizon,
            seed=seed,
            families=[family.strip() for family in families.split(",") if family.strip()] if families else None,
        )
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    verdict = "promoted to champion" if document["promoted"] else "registered, not promoted"
    lines = [
        f"{document['model_name']} v{document['version']} ({document['family']}): {verdict} — {document['reason']}",
        f"  {document['promotion_metric']}: {document['challenger_metric']}  (champion: {document['champion_metric']})",
        f"  trained on {document['rows']['train']} rows of {len(document['symbols'])} symbols at {timeframe}, "
        f"{document['trials']} trials; holdout {document['rows']['holdout']} rows",
        f"  ONNX parity max |ΔP| {document['onnx_parity_max_abs_diff']:.2e}; MLflow run {document['run_id']}",
    ]
    _emit(as_json, document, "\n".join(lines))


@main.command("serve-model")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65_535), default=3001, show_default=True)
@_fail_cleanly
def serve_model(host: str, port: int) -> None:
    """Serve the champion signal model with BentoML (POST /predict, POST /signal) until interrupted."""
    settings = get_settings()
    if settings.embedded:
        migrate(database_urls(settings))  # /signal reads the latest bars
    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PASAR_HOME": str(settings.home.resolve()),
        "BENTOML_DO_NOT_TRACK": "true",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    beside = Path(sys.executable).parent / "bentoml"
    command = [str(beside)] if beside.exists() else [sys.executable, "-m", "bentoml"]
    command += ["serve", "serving.service:SignalModel", "--host", host, "--port", str(port), "--working-dir", str(root)]
    os.execve(command[0], command, env)  # noqa: S606 - becomes the BentoML server (signals reach it directly)
