"""What template.yaml promises: least privilege, alarms, a dashboard, the runtime."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from usage_meter_local.template import load, resources

FUNCTIONS = resources("AWS::Serverless::Function")


def statements(logical_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for policy in FUNCTIONS[logical_id]["Properties"].get("Policies", []):
        found.extend(policy.get("Statement", []))
    return found


def actions_on(logical_id: str) -> set[str]:
    return {action for s in statements(logical_id) for action in s["Action"]}


def resource_refs(statement: dict[str, Any]) -> list[str]:
    """Logical ids named by a statement's resources (!GetAtt X.Arn or !Sub "${X.Arn}/...")."""
    resources_ = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
    names = []
    for resource in resources_:
        assert resource != "*", "no wildcard resources"
        if isinstance(resource, dict) and "Fn::GetAtt" in resource:
            names.append(resource["Fn::GetAtt"][0])
        elif isinstance(resource, dict) and "Fn::Sub" in resource:
            names.extend(re.findall(r"\$\{(\w+)\.Arn\}", resource["Fn::Sub"]))
        else:
            raise AssertionError(f"unexpected resource {resource!r}")
    return names


@pytest.mark.parametrize("function", sorted(FUNCTIONS))
def test_no_wildcards_no_scan_no_delete(function: str) -> None:
    for statement in statements(function):
        assert statement["Effect"] == "Allow"
        resource_refs(statement)  # asserts no "*"
        for action in statement["Action"]:
            assert "*" not in action
            assert action not in {"dynamodb:Scan", "dynamodb:BatchWriteItem"}
            if action == "dynamodb:DeleteItem":  # a cancelled unique_count value's markers
                assert (function, resource_refs(statement)) == ("EventsFunction", ["UsageTable"])


def test_each_function_gets_only_what_it_uses() -> None:
    assert actions_on("TrackFunction") == {
        "dynamodb:UpdateItem",
        "dynamodb:Query",
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "dynamodb:BatchGetItem",  # the usage block and the minute counter, in one call
        "dynamodb:ConditionCheckItem",  # the accounts copies a single event was judged by
    }
    for reader in (
        "CurrentFunction",
        "HistoryFunction",
        "EntitlementsFunction",
        "GrantexFunction",
        "GlyphnetFunction",
    ):
        assert actions_on(reader) == {"dynamodb:Query", "dynamodb:GetItem"}, reader
    # BillingOS's track, metrics and check: what the track function does, and the meters'
    # descriptions (its feature titles) from the KindIndex
    assert actions_on("BillingosFunction") == actions_on("TrackFunction")
    assert actions_on("AuthorizerFunction") == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    assert actions_on("DocsFunction") == set()
    assert actions_on("MetersFunction") == {"dynamodb:Query"}
    assert actions_on("EventsFunction") == {
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchGetItem",
        "events:PutEvents",  # a correction's announcement
        "sqs:SendMessage",
    }


def test_the_events_function_reads_the_log_through_its_index_and_revises_records_only() -> None:
    """It queries the idempotency table only through EventLogIndex, and may revise records
    (UpdateItem) but never put one: events are recorded by tracking alone."""
    on_index = [
        s
        for s in statements("EventsFunction")
        if s["Resource"] == {"Fn::Sub": "${IdempotencyTable.Arn}/index/EventLogIndex"}
    ]
    assert [s["Action"] for s in on_index] == [["dynamodb:Query"]]
    on_records = [
        s
        for s in statements("EventsFunction")
        if s["Resource"] == {"Fn::GetAtt": ["IdempotencyTable", "Arn"]}
    ]
    assert [set(s["Action"]) for s in on_records] == [
        {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:BatchGetItem"}
    ]


def test_meters_function_only_lists_the_kind_index() -> None:
    """GET /v1/meters reads the meters through the accounts table's KindIndex: its role may
    query that index and nothing else (no base table, so no key or profile item)."""
    (statement,) = statements("MetersFunction")
    assert statement["Action"] == ["dynamodb:Query"]
    assert statement["Resource"] == {"Fn::Sub": "${AccountsTable.Arn}/index/KindIndex"}


def test_authorizer_reads_key_lookups_and_writes_only_their_last_use() -> None:
    """The authorizer faces every anonymous caller: its role reads only key lookup items
    (pk KEY#<sha256>) and writes only their lastUsedAt, never a developer, plan or key listing."""
    by_action = {action: s for s in statements("AuthorizerFunction") for action in s["Action"]}
    assert set(by_action) == {"dynamodb:GetItem", "dynamodb:UpdateItem"}
    for action, statement in by_action.items():
        assert resource_refs(statement) == ["AccountsTable"], action
        assert statement["Condition"]["ForAllValues:StringLike"] == {"dynamodb:LeadingKeys": ["KEY#*"]}, (
            action
        )
    update = by_action["dynamodb:UpdateItem"]["Condition"]
    assert update == {
        "ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["KEY#*"]},
        "ForAllValues:StringEquals": {"dynamodb:Attributes": ["pk", "sk", "lastUsedAt"]},
        "StringEqualsIfExists": {"dynamodb:ReturnValues": ["NONE"]},
    }


def test_only_track_and_corrections_write_the_idempotency_table_and_the_rollup_never_touches_it() -> None:
    for function in FUNCTIONS:
        for statement in statements(function):
            if "IdempotencyTable" in resource_refs(statement):
                assert function in ("TrackFunction", "BillingosFunction", "EventsFunction")  # track, correct
    rollup_resources = {name for s in statements("RollupFunction") for name in resource_refs(s)}
    # the usage table; usage.period.closed: the endpoints (KindIndex), the bus and the queue
    assert rollup_resources == {"UsageTable", "AccountsTable", "EventBus", "WebhookQueue"}


def _leading_keys(statement: dict[str, Any]) -> list[str] | None:
    return statement.get("Condition", {}).get("ForAllValues:StringLike", {}).get("dynamodb:LeadingKeys")


def test_alert_and_webhook_functions_reach_only_their_items() -> None:
    """The alerts function writes claims under developers' partitions only; the webhooks function
    touches delivery records (HOOK#) and reads endpoints (WEBHOOK#) only, and can sign but not
    administer the key; neither can delete or scan."""
    for statement in statements("AlertsFunction"):
        if any(a.startswith("dynamodb:") for a in statement["Action"]) and "KindIndex" not in str(
            statement["Resource"]
        ):
            assert set(_leading_keys(statement) or []) <= {"DEV#*", "PLAN#*", "METER#*"}, statement
    hooks = statements("WebhooksFunction")
    for statement in hooks:
        if any(a.startswith("dynamodb:") for a in statement["Action"]):
            assert _leading_keys(statement) in (["HOOK#*"], ["WEBHOOK#*"]), statement
    assert actions_on("WebhooksFunction") == {
        "dynamodb:UpdateItem",
        "dynamodb:PutItem",
        "dynamodb:GetItem",
        "kms:GenerateMac",
        "sqs:ChangeMessageVisibility",
    }


def test_every_queue_has_an_alarm_and_the_stream_mapping_its_failure_queue() -> None:
    queues = set(resources("AWS::SQS::Queue")) - {"WebhookQueue"}  # the live queue drains itself
    alarmed = {
        a["Properties"]["Dimensions"][0]["Value"]["Fn::GetAtt"][0]
        for a in resources("AWS::CloudWatch::Alarm").values()
        if a["Properties"]["Namespace"] == "AWS/SQS"
    }
    assert queues == alarmed
    stream = FUNCTIONS["AlertsFunction"]["Properties"]["Events"]["UsageChanges"]["Properties"]
    assert stream["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["AlertsFailureQueue", "Arn"]
    }
    assert stream["BisectBatchOnFunctionError"] is True
    assert stream["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    table = resources("AWS::DynamoDB::Table")["UsageTable"]["Properties"]
    assert table["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_authorizer_guards_every_route_but_the_document() -> None:
    api = load()["Resources"]["UsageApi"]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "ApiKeyAuthorizer"
    open_routes = [
        (name, event["Properties"]["Path"])
        for name, fn in FUNCTIONS.items()
        for event in fn["Properties"].get("Events", {}).values()
        if event["Type"] == "HttpApi" and event["Properties"].get("Auth", {}).get("Authorizer") == "NONE"
    ]
    assert open_routes == [("DocsFunction", "/v1/openapi.json")]


def test_runtime_architecture_and_layer() -> None:
    function_globals = load()["Globals"]["Function"]
    assert function_globals["Runtime"] == "python3.13"
    assert function_globals["Architectures"] == ["arm64"]
    layer = load()["Resources"]["CoreLayer"]
    assert layer["Metadata"]["BuildMethod"] == "python3.13"


def test_tables_are_protected() -> None:
    for name, table in resources("AWS::DynamoDB::Table").items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        assert props["DeletionProtectionEnabled"] is True, name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert table["DeletionPolicy"] == "Retain", name


def test_alarms_cover_5xx_throttles_dlq_and_drift_and_notify_the_topic() -> None:
    alarms = resources("AWS::CloudWatch::Alarm")
    watched = {(a["Properties"]["Namespace"], a["Properties"]["MetricName"]) for a in alarms.values()}
    assert {
        ("AWS/ApiGateway", "5xx"),
        ("AWS/Lambda", "Throttles"),
        ("AWS/DynamoDB", "WriteThrottleEvents"),
        ("AWS/SQS", "ApproximateNumberOfMessagesVisible"),
        ("UsageMeter", "RollupDrift"),
    } <= watched
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}]


def test_dashboard_body_is_json_once_substituted() -> None:
    (dashboard,) = resources("AWS::CloudWatch::Dashboard").values()
    body = re.sub(r"\$\{[^}]+\}", "x", dashboard["Properties"]["DashboardBody"]["Fn::Sub"])
    widgets = json.loads(body)["widgets"]
    titles = {w["properties"]["title"] for w in widgets}
    assert {"Events", "API", "Rollup"} <= titles


def test_stage_throttling_is_set_from_parameters_with_safe_defaults() -> None:
    template = load()
    parameters = template["Parameters"]
    route_settings = template["Resources"]["UsageApi"]["Properties"]["DefaultRouteSettings"]
    assert route_settings == {
        "ThrottlingBurstLimit": {"Ref": "ApiThrottlingBurstLimit"},
        "ThrottlingRateLimit": {"Ref": "ApiThrottlingRateLimit"},
    }
    for name, default in (("ApiThrottlingRateLimit", 500), ("ApiThrottlingBurstLimit", 1000)):
        assert parameters[name]["Type"] == "Number"
        assert parameters[name]["Default"] == default
        assert parameters[name]["MinValue"] == 1  # 0 would refuse every request
        # far below the account's default stage limits (10,000/s, burst 5,000)
        assert default <= 5000


RESERVED_CONCURRENCY = {
    "TrackFunction": "TrackReservedConcurrency",
    "CurrentFunction": "ReadReservedConcurrency",
    "HistoryFunction": "ReadReservedConcurrency",
    "EntitlementsFunction": "ReadReservedConcurrency",
    "MetersFunction": "ReadReservedConcurrency",
    "GrantexFunction": "ReadReservedConcurrency",
    "GlyphnetFunction": "ReadReservedConcurrency",
    "BillingosFunction": "TrackReservedConcurrency",
    "EventsFunction": "ReadReservedConcurrency",
    "AuthorizerFunction": "AuthorizerReservedConcurrency",
}


@pytest.mark.parametrize(("function", "parameter"), RESERVED_CONCURRENCY.items())
def test_reserved_concurrency_is_a_parameter_unreserved_by_default(function: str, parameter: str) -> None:
    template = load()
    setting = FUNCTIONS[function]["Properties"]["ReservedConcurrentExecutions"]
    condition, reserved, otherwise = setting["Fn::If"]
    assert reserved == {"Ref": parameter}
    assert otherwise == {"Ref": "AWS::NoValue"}  # the default: no reservation at all
    assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, "-1"]}]}
    declared = template["Parameters"][parameter]
    assert (declared["Type"], declared["Default"], declared["MinValue"]) == ("Number", -1, -1)


def test_functions_without_a_reserved_concurrency_parameter_reserve_none() -> None:
    for name, function in FUNCTIONS.items():
        if name not in RESERVED_CONCURRENCY:
            assert "ReservedConcurrentExecutions" not in function["Properties"], name
