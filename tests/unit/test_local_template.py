"""The local tools read template.yaml itself: schedules, routes with path parameters."""

from __future__ import annotations

from pathlib import Path

from usage_meter_local.template import ROOT, routes, schedules


def test_the_rollup_schedule_comes_from_the_template_parameter() -> None:
    (rollup,) = schedules()
    assert rollup.function == "RollupFunction"
    assert rollup.expression == "rate(1 hour)"
    assert rollup.seconds == 3600


def test_disabled_and_other_rates(tmp_path: Path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        """
Resources:
  A:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: a/
      Events:
        Often: {Type: Schedule, Properties: {Schedule: rate(5 minutes)}}
        Off: {Type: Schedule, Properties: {Schedule: rate(1 day), Enabled: false}}
        Cron: {Type: Schedule, Properties: {Schedule: "cron(0 * * * ? *)"}}
        Trailing: {Type: Schedule, Properties: {Schedule: "rate(2 minutes)\\n"}}
"""
    )
    assert [(s.function, s.seconds) for s in schedules(template)] == [("A", 300)]


def test_path_parameters_match_one_segment() -> None:
    (route,) = [r for r in routes() if r.path == "/v1/entitlements/{metric}"]
    assert route.match("GET", "/v1/entitlements/api_calls") == {"metric": "api_calls"}
    assert route.match("GET", "/v1/entitlements/a%2Eb") == {"metric": "a.b"}
    assert route.match("GET", "/v1/entitlements/a/b") is None
    assert route.match("POST", "/v1/entitlements/api_calls") is None
    assert (ROOT / route.code_uri / "app.py").exists()
