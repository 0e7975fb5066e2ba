"""`make rollup` (`python -m usage_meter_local.dev rollup`): it uses the running stack's
DynamoDB Local port from `.local/env`, and a bad DATE is one line, not a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from usage_meter_local import dev, envfile


def test_rollup_uses_the_port_of_the_running_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "LOCAL", tmp_path)
    assert dev.rollup_port(None) == dev.DEFAULT_DYNAMODB_PORT  # no stack has run here

    envfile.write(tmp_path / "env", {"PORT": "3101", "DYNAMODB_PORT": "8101"})

    assert dev.rollup_port(None) == 8101
    assert dev.rollup_port(8202) == 8202  # DYNAMODB_PORT=… make rollup still wins


@pytest.mark.parametrize("date", ["bad", "2026-13-01", "20261120", "2026-11-20T00:00"])
def test_a_bad_date_is_one_line(date: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert dev.main(["rollup", "--date", date]) == 2
    out, err = capsys.readouterr()
    assert (out, err) == (
        "",
        f"error: DATE={date} is not a date: give YYYY-MM-DD (make rollup DATE=2026-11-20)\n",
    )
