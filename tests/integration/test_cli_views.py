"""`usage-meter usage show` and `usage-meter usage history` through the CLI's entry point
(`usage_meter_admin.cli.main`) against moto, with the clock frozen and known events tracked through
the API: the text rendered at a fixed width with no colour, the `--json` answers (the API's own
bodies), colour on a terminal, narrow terminals, and the one-line errors.

Snapshots compare whole outputs line by line, trailing spaces aside (rich pads table cells to
the column width; editors strip them from the expected strings).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from usage_meter import jsonutil
from usage_meter.domain import accounts
from usage_meter.models.accounts import MetricLimit, Plan
from usage_meter.store import accounts as account_store
from usage_meter_admin import cli
from usage_meter_admin import views as cli_views
from usage_meter_local.handlers import load_handler
from usage_meter_local.template import ROOT

from helpers import SERVICE, summed
from integration.conftest import Run, Stack

Freeze = Callable[[datetime], None]

NOW = datetime(2026, 11, 25, 15, 30, tzinfo=UTC)  # a Wednesday: ISO week 2026-W48 began on the 23rd
WIDTH = 100
ANSI = re.compile(r"\x1b\[[0-9;]*m")

STARTUP = Plan(
    name="startup",
    metrics={
        "api_calls": MetricLimit(limit=Decimal(100), enforcement="hard"),
        "tokens": MetricLimit(limit=Decimal(1000), enforcement="soft"),
        "images": MetricLimit(limit=None),
    },
    requests_per_minute=300,
)
# (day, metric, quantity): every kind of row — under a hard limit, past a soft limit,
# unlimited in the plan, not in the plan — and an event of the previous month
EVENTS = [
    ("2026-10-30", "api_calls", 9),
    ("2026-11-20", "api_calls", 12),
    ("2026-11-22", "api_calls", 3),
    ("2026-11-22", "tokens", Decimal("1532.5")),
    ("2026-11-24", "exports", 7),
    ("2026-11-25", "api_calls", 20),
    ("2026-11-25", "tokens", Decimal("0.1")),
    ("2026-11-25", "tokens", Decimal("0.2")),
    ("2026-11-25", "images", 4),
]


@pytest.fixture(scope="module", autouse=True)
def _handlers_loaded() -> None:
    """Load the functions the tests call before capsys swaps stdout: their Loggers keep the
    stream they find at creation."""
    for function in ("track", "current", "history"):
        load_handler(f"functions/{function}/")


def fixed_console() -> Console:
    return Console(width=WIDTH, color_system=None, force_terminal=False, highlight=False, emoji=False)


@pytest.fixture
def plain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI renders at a fixed width, without colour."""
    monkeypatch.setattr(cli_views, "make_console", fixed_console)


@pytest.fixture
def carol(stack: Stack, freeze: Freeze) -> Stack:
    """dev_carol on the `startup` plan with EVENTS tracked, the clock at NOW."""
    freeze(NOW)
    account_store.put_plan(STARTUP)
    accounts.create_developer("Carol", "startup", "dev_carol")
    body = {
        "events": [
            {"developerId": "dev_carol", "metric": m, "quantity": q, "timestamp": f"{d}T12:00:00Z"}
            for d, m, q in EVENTS
        ]
    }
    answer = stack.track(jsonutil.dumps(body), auth=SERVICE)
    assert answer.status == 200
    assert answer.json()["recorded"] == len(EVENTS)
    return stack


def text(out: str) -> str:
    return "".join(line.rstrip() + "\n" for line in out.splitlines())


def snapshot(expected: str) -> str:
    return expected.removeprefix("\n")


# ---- usage show ----------------------------------------------------------------------------------------

SHOW = snapshot("""
developer   dev_carol
plan        startup
period      2026-11 (2026-11-01 to 2026-11-30)
resets in   6 days
requests    8
rate limit  300/min (9 in the current minute)

metric     consumed      limit  remaining    used %                        enforcement
──────────────────────────────────────────────────────────────────────────────────────
api_calls        35        100         65   35.00 %  ███████               hard
exports           7  unlimited          —         —                        not in plan
images            4  unlimited          —         —                        —
tokens      1,532.8      1,000          0  153.28 %  ████████████████████  soft
""")


def test_show_renders_a_row_per_metric_with_limit_percentage_and_enforcement(
    carol: Stack, run: Run, plain: None
) -> None:
    code, out, err = run("usage", "show", "--developer", "dev_carol")

    assert (code, err) == (0, "")
    assert text(out) == SHOW


def test_show_gives_a_level_against_its_ceiling_in_its_unit(carol: Stack, run: Run, plain: None) -> None:
    assert run("meters", "create", "agents", "--aggregation", "level", "--unit", "agents")[0] == 0
    account_store.put_plan(
        STARTUP.model_copy(
            update={
                "metrics": {**STARTUP.metrics, "agents": MetricLimit(limit=Decimal(500), enforcement="hard")}
            }
        )
    )
    body = {"events": [{"developerId": "dev_carol", "metric": "agents", "quantity": q} for q in (40, -3)]}
    assert carol.track(jsonutil.dumps(body), auth=SERVICE).json()["recorded"] == 2

    code, out, err = run("usage", "show", "--developer", "dev_carol", "--metric", "agents")

    assert (code, err) == (0, "")
    row = next(line for line in text(out).splitlines() if line.startswith("agents"))
    assert row.split()[:6] == ["agents", "37", "of", "500", "agents", "500"]
    assert "463" in row.split()


def test_show_group_by_draws_one_bar_per_group(carol: Stack, run: Run, plain: None) -> None:
    assert run("meters", "create", "requests", "--aggregation", "count", "--dimensions", "endpoint")[0] == 0
    sent = ["/v1/verify"] * 6 + ["/v1/sign"] * 3 + ["/v1/keys"]
    body = {
        "events": [
            {"developerId": "dev_carol", "metric": "requests", "metadata": {"endpoint": e}} for e in sent
        ]
    }
    assert carol.track(jsonutil.dumps(body), auth=SERVICE).json()["recorded"] == len(sent)

    code, out, err = run(
        "usage", "show", "--developer", "dev_carol", "--metric", "requests", "--group-by", "endpoint"
    )

    assert (code, err) == (0, "")
    assert text(out).split("\n\n", 2)[2] == snapshot("""
requests by endpoint
group       consumed  events    share
───────────────────────────────────────────────────────────────────────────────
/v1/verify         6       6  60.00 %  ████████████████████████████████████████
/v1/sign           3       3  30.00 %  ████████████████████
/v1/keys           1       1  10.00 %  ██████▋
""")
    refused = run("usage", "show", "--developer", "dev_carol", "--group-by", "region")
    assert refused == (
        1,
        "",
        "error: groupBy: no meter declares region (GET /v1/meters lists the dimensions)\n",
    )


def test_show_a_week_of_one_metric_says_limits_are_the_billing_periods(
    carol: Stack, run: Run, plain: None
) -> None:
    code, out, err = run(
        "usage", "show", "--developer", "dev_carol", "--period", "week", "--metric", "tokens"
    )

    assert (code, err) == (0, "")
    assert text(out) == snapshot("""
developer   dev_carol
plan        startup
period      2026-W48 (2026-11-23 to 2026-11-29)
resets in   6 days
requests    2
rate limit  300/min (9 in the current minute)

metric  consumed  limit  remaining    used %                        enforcement
───────────────────────────────────────────────────────────────────────────────
tokens       0.3  1,000          0  153.28 %  ████████████████████  soft
consumed covers 2026-W48; limit, remaining and used % describe the billing period
""")


def test_show_json_is_the_apis_answer(carol: Stack, run: Run) -> None:
    code, out, err = run("--json", "usage", "show", "--developer", "dev_carol", "--period", "day")

    assert (code, err) == (0, "")
    assert out.endswith("}\n")
    assert out.count("\n") == 1
    answer = carol.current(auth=SERVICE, developerId="dev_carol", period="day")
    assert answer.status == 200
    assert jsonutil.loads(out) == answer.json()
    assert jsonutil.loads(out)["metrics"]["tokens"] == summed(
        {"consumed": Decimal("0.3"), "limit": 1000, "remaining": 0, "percentageUsed": Decimal("153.28")},
        2,
        Decimal("0.15"),  # 0.1 + 0.2, exactly, and its average
    )


def test_show_on_a_terminal_has_colour_and_the_same_text(
    carol: Stack, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        cli_views,
        "make_console",
        lambda: Console(width=WIDTH, force_terminal=True, color_system="standard", highlight=False),
    )
    code, out, _ = run("usage", "show", "--developer", "dev_carol")

    assert code == 0
    assert "\x1b[32m███████ " in out  # 35 %: green
    assert "\x1b[31m████████████████████\x1b[0m" in out  # past a soft limit: red
    assert text(ANSI.sub("", out)) == SHOW


def test_show_off_a_terminal_is_plain_text_at_the_columns_given(
    carol: Stack, run: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI's own console: stdout is not a terminal here, so no escape codes, and COLUMNS sets
    the width."""
    for variable in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("COLUMNS", str(WIDTH))

    code, out, _ = run("usage", "show", "--developer", "dev_carol")

    assert code == 0
    assert "\x1b" not in out
    assert text(out) == SHOW


@pytest.mark.parametrize(
    ("width", "rows"),
    [
        (
            80,
            [
                "api_calls        35        100         65   35.00 %  ████▉           hard",
                "exports           7  unlimited          —         —                  not in plan",
                "images            4  unlimited          —         —                  —",
                "tokens      1,532.8      1,000          0  153.28 %  ██████████████  soft",
            ],
        ),
        (
            72,
            [
                "api_calls        35        100         65   35.00 %  ██▏     hard",
                "exports           7  unlimited          —         —          not in plan",
                "images            4  unlimited          —         —          —",
                "tokens      1,532.8      1,000          0  153.28 %  ██████  soft",
            ],
        ),
        (  # no room for a bar of MIN_BAR_WIDTH: no bar column, the numbers are never squeezed
            66,
            [
                "api_calls        35        100         65   35.00 %  hard",
                "exports           7  unlimited          —         —  not in plan",
                "images            4  unlimited          —         —  —",
                "tokens      1,532.8      1,000          0  153.28 %  soft",
            ],
        ),
    ],
)
def test_show_fits_a_narrow_terminal_with_shorter_bars_or_none(
    carol: Stack, run: Run, monkeypatch: pytest.MonkeyPatch, width: int, rows: list[str]
) -> None:
    monkeypatch.setattr(cli_views, "make_console", lambda: Console(width=width, color_system=None))

    code, out, _ = run("usage", "show", "--developer", "dev_carol")

    assert code == 0
    lines = text(out).splitlines()
    assert max(map(len, lines)) <= width
    assert lines[-4:] == rows


# ---- usage history -------------------------------------------------------------------------------------


def test_history_by_day_zero_fills_with_empty_bars(carol: Stack, run: Run, plain: None) -> None:
    code, out, err = run("usage", "history", "--developer", "dev_carol", "--days", "8")

    assert (code, err) == (0, "")
    assert text(out) == snapshot("""
developer  dev_carol
history    2026-11-18 to 2026-11-25, by day (8 days)
total      events (every metric)

date        events
────────────────────────────────────────────────────────────
2026-11-18       0
2026-11-19       0
2026-11-20       1  ██████████
2026-11-21       0
2026-11-22       2  ████████████████████
2026-11-23       0
2026-11-24       1  ██████████
2026-11-25       4  ████████████████████████████████████████
────────────────────────────────────────────────────────────
sum              8
max              4  on 2026-11-25
""")


def test_history_of_a_metric_shows_its_exact_quantities(carol: Stack, run: Run, plain: None) -> None:
    code, out, err = run(
        "usage", "history", "--developer", "dev_carol", "--start-date", "2026-11-21", "--metric", "tokens"
    )

    assert (code, err) == (0, "")
    assert text(out) == snapshot("""
developer  dev_carol
history    2026-11-21 to 2026-11-25, by day (5 days)
total      tokens consumed

date         tokens
─────────────────────────────────────────────────────────────
2026-11-21        0
2026-11-22  1,532.5  ████████████████████████████████████████
2026-11-23        0
2026-11-24        0
2026-11-25      0.3  ▏
─────────────────────────────────────────────────────────────
sum         1,532.8
max         1,532.5  on 2026-11-22
""")


def test_history_by_month(carol: Stack, run: Run, plain: None) -> None:
    code, out, err = run(
        "usage", "history", "--developer", "dev_carol", "--days", "60", "--granularity", "month"
    )

    assert (code, err) == (0, "")
    assert text(out) == snapshot("""
developer  dev_carol
history    2026-09 to 2026-11, by month (3 months)
total      events (every metric)

date     events
─────────────────────────────────────────────────────────
2026-09       0
2026-10       1  █████
2026-11       8  ████████████████████████████████████████
─────────────────────────────────────────────────────────
sum           9
max           8  on 2026-11
a month counts only the days of the range
""")


def test_history_without_usage_is_all_empty_bars(carol: Stack, run: Run, plain: None) -> None:
    code, out, err = run("usage", "history", "--developer", "dev_bob", "--days", "3", "--metric", "api_calls")

    assert (code, err) == (0, "")
    assert text(out) == snapshot("""
developer  dev_bob
history    2026-11-23 to 2026-11-25, by day (3 days)
total      api_calls consumed

date        api_calls
───────────────────────────────────────────────────────────────
2026-11-23          0
2026-11-24          0
2026-11-25          0
───────────────────────────────────────────────────────────────
sum                 0
max                 0
""")


def test_history_json_is_the_apis_answer(carol: Stack, run: Run) -> None:
    code, out, err = run(
        "--json", "usage", "history", "--developer", "dev_carol", "--days", "8", "--metric", "tokens"
    )

    assert (code, err) == (0, "")
    answer = carol.history(auth=SERVICE, developerId="dev_carol", days="8", metric="tokens")
    assert answer.status == 200
    assert jsonutil.loads(out) == answer.json()
    assert [e["metrics"]["tokens"] for e in jsonutil.loads(out)["entries"]] == [
        0,
        0,
        0,
        0,
        Decimal("1532.5"),
        0,
        0,
        Decimal("0.3"),
    ]


# ---- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
@pytest.mark.parametrize("view", [["show"], ["history", "--days", "7"]], ids=["show", "history"])
def test_unknown_developer_is_a_one_line_error(
    carol: Stack, run: Run, plain: None, json_flag: list[str], view: list[str]
) -> None:
    code, out, err = run(*json_flag, "usage", view[0], "--developer", "dev_nobody", *view[1:])

    assert (code, out, err) == (1, "", "error: no developer dev_nobody\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--days", "7", "--start-date", "2026-11-01"],
            "error: use either --days or --start-date/--end-date",
        ),
        (["--end-date", "2026-11-01"], "error: --end-date needs --start-date"),
        (
            ["--start-date", "2026-11-02", "--end-date", "2026-11-01"],
            "error: --end-date is before --start-date",
        ),
        (
            ["--start-date", "2025-10-31", "--end-date", "2026-11-01"],
            "error: --start-date to --end-date covers more than 366 days",
        ),
        (
            ["--start-date", "2027-01-01"],
            "error: --start-date 2027-01-01 is after today (2026-11-25, the default --end-date)",
        ),
        (
            ["--start-date", "1969-12-31", "--end-date", "1970-01-02"],
            "error: --start-date 1969-12-31: dates run from 1970-01-01 to 9998-12-31",
        ),
    ],
    ids=[
        "days-and-dates",
        "end-without-start",
        "inverted-range",
        "range-too-long",
        "start-after-today",
        "date-out-of-bounds",
    ],
)
def test_history_range_errors(carol: Stack, run: Run, plain: None, argv: list[str], message: str) -> None:
    code, out, err = run("usage", "history", "--developer", "dev_carol", *argv)

    assert (code, out, err) == (1, "", message + "\n")


def test_invalid_developer_id_is_a_one_line_error(carol: Stack, run: Run, plain: None) -> None:
    code, out, err = run("usage", "show", "--developer", "bad id!")

    assert (code, out) == (1, "")
    assert err.startswith("error: invalid input: developer_id: ")
    assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["history", "--developer", "dev_carol", "--days", "0"], "'0': a number of days from 1 to 366"),
        (["history", "--developer", "dev_carol", "--days", "367"], "'367': a number of days from 1 to 366"),
        (["history", "--developer", "dev_carol", "--granularity", "week"], "invalid choice: 'week'"),
        (["show", "--developer", "dev_carol", "--metric", "bad metric"], "'bad metric' is not a metric name"),
        (["show", "--developer", "dev_carol", "--period", "year"], "invalid choice: 'year'"),
        (["show"], "the following arguments are required: --developer"),
    ],
    ids=["zero-days", "too-many-days", "granularity", "metric", "period", "no-developer"],
)
def test_invalid_arguments_are_usage_errors(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["usage", *argv])

    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# ---- the pieces --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "scale", "width", "expected"),
    [
        (Decimal(0), Decimal(10), 10, ""),
        (Decimal(5), Decimal(0), 10, ""),
        (Decimal(10), Decimal(10), 10, "█" * 10),
        (Decimal(15), Decimal(10), 10, "█" * 10),  # past the scale: full, never longer
        (Decimal(1), Decimal(10), 10, "█"),
        (Decimal("0.5"), Decimal(10), 10, "▌"),
        (Decimal("0.3125"), Decimal(10), 10, "▍"),  # 2.5 eighths: half up
        (Decimal("1.0625"), Decimal(10), 10, "█▏"),
        (Decimal("0.000001"), Decimal(10), 10, "▏"),  # tiny but not nothing
    ],
)
def test_bar(value: Decimal, scale: Decimal, width: int, expected: str) -> None:
    assert cli_views.bar(value, scale, width) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Decimal("1234567.125"), "1,234,567.125"),
        (Decimal("1E+3"), "1,000"),
        (Decimal("1.50"), "1.5"),
        (Decimal("0.000000001"), "0.000000001"),
        (Decimal("1000000000000"), "1,000,000,000,000"),
        (0, "0"),
    ],
)
def test_numbers_are_exact(value: Decimal | int, expected: str) -> None:
    assert cli_views.number(value) == expected


def test_rich_stays_out_of_the_lambda_layer(tmp_path: Path) -> None:
    """rich is the CLI's dependency: importing the CLI and the views does not import it, and
    the layer's requirements do not list it."""
    code = (
        "import sys, usage_meter_admin.cli, usage_meter_admin.views; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] == 'rich'); "
        "print(*leaked); sys.exit(bool(leaked))"
    )
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "\n", "")
    requirements = (ROOT / "layers/core/requirements.txt").read_text().splitlines()
    assert not [line for line in requirements if line.strip().lower().startswith("rich")]
