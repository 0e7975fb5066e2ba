"""template.yaml, read as data: the tables, routes and environment the local tools build from.

There is no second copy of the schema: tables are created from the template's own
`AWS::DynamoDB::Table` properties, routes from the functions' `HttpApi` events.
"""

from __future__ import annotations

import json
import re
import time
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import yaml
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags (!Ref, !GetAtt, !Sub...) as dicts."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = str(value).split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


@lru_cache(maxsize=4)
def load(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        document: dict[str, Any] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    return document


def resources(kind: str, path: Path = TEMPLATE) -> dict[str, dict[str, Any]]:
    """Resources of one type, by logical id."""
    return {
        name: resource for name, resource in load(path)["Resources"].items() if resource.get("Type") == kind
    }


def table_logical_ids(path: Path = TEMPLATE) -> list[str]:
    return sorted(resources("AWS::DynamoDB::Table", path))


def create_table_requests(names: dict[str, str], path: Path = TEMPLATE) -> list[dict[str, Any]]:
    """CreateTable requests (plus the TTL attribute) for every table, named by `names[logicalId]`."""
    requests = []
    for logical_id, resource in resources("AWS::DynamoDB::Table", path).items():
        props = resource["Properties"]
        request: dict[str, Any] = {
            "TableName": names[logical_id],
            "AttributeDefinitions": props["AttributeDefinitions"],
            "KeySchema": props["KeySchema"],
            "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
        }
        for index_kind in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
            if props.get(index_kind):
                request[index_kind] = props[index_kind]
        stream = props.get("StreamSpecification")
        if stream:
            request["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": stream["StreamViewType"],
            }
        ttl = props.get("TimeToLiveSpecification")
        if ttl and ttl.get("Enabled"):
            request["_ttl_attribute"] = ttl["AttributeName"]
        requests.append(request)
    return requests


def create_tables(dynamodb: Any, names: dict[str, str], path: Path = TEMPLATE) -> None:
    """Create every table of the template with a boto3 DynamoDB client (skips existing ones)."""
    existing = set(dynamodb.list_tables().get("TableNames", []))
    for request in create_table_requests(names, path):
        ttl_attribute = request.pop("_ttl_attribute", None)
        if request["TableName"] in existing:
            _add_missing_indexes(dynamodb, request)
            _add_missing_stream(dynamodb, request)
            continue
        dynamodb.create_table(**request)
        dynamodb.get_waiter("table_exists").wait(TableName=request["TableName"])
        if ttl_attribute:
            dynamodb.update_time_to_live(
                TableName=request["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
            )


def _add_missing_stream(dynamodb: Any, request: dict[str, Any]) -> None:
    """Give a table kept from an older template the stream the template now gives it."""
    wanted = request.get("StreamSpecification")
    described = dynamodb.describe_table(TableName=request["TableName"])["Table"]
    if wanted and not described.get("StreamSpecification", {}).get("StreamEnabled"):
        dynamodb.update_table(TableName=request["TableName"], StreamSpecification=wanted)


def _add_missing_indexes(dynamodb: Any, request: dict[str, Any]) -> None:
    """Give a table kept from an older template the global secondary indexes it lacks (local data
    outlives template changes). DynamoDB builds one index per UpdateTable and backfills it;
    items written before the template gave them the index's key attribute stay out of it."""
    table = request["TableName"]
    described = dynamodb.describe_table(TableName=table)["Table"]
    present = {index["IndexName"] for index in described.get("GlobalSecondaryIndexes", [])}
    for index in request.get("GlobalSecondaryIndexes", []):
        if index["IndexName"] in present:
            continue
        dynamodb.update_table(
            TableName=table,
            AttributeDefinitions=request["AttributeDefinitions"],
            GlobalSecondaryIndexUpdates=[{"Create": index}],
        )
        while True:
            indexes = dynamodb.describe_table(TableName=table)["Table"].get("GlobalSecondaryIndexes", [])
            status = {i["IndexName"]: i.get("IndexStatus") for i in indexes}
            if status.get(index["IndexName"]) == "ACTIVE":
                break
            time.sleep(0.2)


class Route(BaseModel):
    """An HttpApi route of one function."""

    method: str
    path: str
    function: str  # logical id
    code_uri: str
    handler: str
    authorizer: str | None = None

    def match(self, method: str, path: str) -> dict[str, str] | None:
        """The path parameters if this route takes the request ({name} matches one segment)."""
        if method.upper() != self.method:
            return None
        pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(self.path))
        found = re.fullmatch(pattern, path)
        return None if found is None else {k: unquote(v) for k, v in found.groupdict().items()}


def routes(path: Path = TEMPLATE) -> list[Route]:
    """Every HttpApi event of every function, with the authorizer that guards it."""
    api = next(iter(resources("AWS::Serverless::HttpApi", path).values()), {})
    auth = api.get("Properties", {}).get("Auth", {})
    default_authorizer = auth.get("DefaultAuthorizer")
    globals_fn = load(path).get("Globals", {}).get("Function", {})
    found = []
    for logical_id, fn in resources("AWS::Serverless::Function", path).items():
        props = fn["Properties"]
        for event in props.get("Events", {}).values():
            if event.get("Type") != "HttpApi":
                continue
            event_props = event["Properties"]
            authorizer = event_props.get("Auth", {}).get("Authorizer", default_authorizer)
            found.append(
                Route(
                    method=event_props["Method"].upper(),
                    path=event_props["Path"],
                    function=logical_id,
                    code_uri=props["CodeUri"],
                    handler=props.get("Handler", globals_fn.get("Handler", "app.lambda_handler")),
                    authorizer=None if authorizer == "NONE" else authorizer,
                )
            )
    return found


def authorizer_function(name: str, path: Path = TEMPLATE) -> str:
    """Logical id of the function behind an HttpApi authorizer (its FunctionArn: !GetAtt X.Arn)."""
    api = next(iter(resources("AWS::Serverless::HttpApi", path).values()))
    arn = api["Properties"]["Auth"]["Authorizers"][name]["FunctionArn"]
    return str(arn["Fn::GetAtt"][0])


def function_code(logical_id: str, path: Path = TEMPLATE) -> tuple[str, str]:
    """(CodeUri, Handler) of a function, the handler defaulting to the Globals one."""
    document = load(path)
    props = document["Resources"][logical_id]["Properties"]
    default = document.get("Globals", {}).get("Function", {}).get("Handler", "app.lambda_handler")
    return str(props["CodeUri"]), str(props.get("Handler", default))


def function_environment(logical_id: str, refs: dict[str, str], path: Path = TEMPLATE) -> dict[str, str]:
    """Global + function environment variables, with !Ref resolved through `refs` (logical id or
    parameter name -> local value)."""
    document = load(path)
    params = {k: str(v.get("Default", "")) for k, v in document.get("Parameters", {}).items()}
    merged: dict[str, Any] = dict(
        document.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
    )
    fn_props = document["Resources"][logical_id]["Properties"]
    merged.update(fn_props.get("Environment", {}).get("Variables", {}))
    env: dict[str, str] = {}
    for key, value in merged.items():
        if isinstance(value, dict) and "Ref" in value:
            name = value["Ref"]
            env[key] = refs.get(name) or params.get(name) or str(name)
        else:
            env[key] = str(value)
    return env


_RATE = re.compile(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


class Schedule(BaseModel):
    """An enabled Schedule event of a function, as an interval."""

    function: str
    expression: str
    seconds: int


def schedules(path: Path = TEMPLATE) -> list[Schedule]:
    """Enabled `rate(...)` schedules of every function (parameters resolved to their defaults)."""
    document = load(path)
    params = {k: v.get("Default") for k, v in document.get("Parameters", {}).items()}
    found = []
    for logical_id, fn in resources("AWS::Serverless::Function", path).items():
        for event in fn["Properties"].get("Events", {}).values():
            if event.get("Type") != "Schedule":
                continue
            props = event["Properties"]
            if props.get("Enabled", True) is False:
                continue
            expression = props["Schedule"]
            if isinstance(expression, dict) and "Ref" in expression:
                expression = params.get(expression["Ref"])
            match = _RATE.fullmatch(str(expression))
            if match:
                unit = match.group(2).rstrip("s")
                found.append(
                    Schedule(
                        function=logical_id,
                        expression=str(expression),
                        seconds=int(match.group(1)) * _UNIT_SECONDS[unit],
                    )
                )
    return found


class StreamSource(BaseModel):
    """A function's DynamoDB stream event source: which table, batch size, retries, filters."""

    function: str
    table: str  # logical id
    batch_size: int
    maximum_retry_attempts: int
    bisect: bool
    patterns: list[dict[str, Any]]


def stream_sources(path: Path = TEMPLATE) -> list[StreamSource]:
    """Every DynamoDB stream event source mapping of the template."""
    found = []
    for logical_id, fn in resources("AWS::Serverless::Function", path).items():
        for event in fn["Properties"].get("Events", {}).values():
            if event.get("Type") != "DynamoDB":
                continue
            props = event["Properties"]
            filters = props.get("FilterCriteria", {}).get("Filters", [])
            found.append(
                StreamSource(
                    function=logical_id,
                    table=props["Stream"]["Fn::GetAtt"][0],
                    batch_size=int(props.get("BatchSize", 100)),
                    maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                    bisect=bool(props.get("BisectBatchOnFunctionError", False)),
                    patterns=[json.loads(f["Pattern"]) for f in filters],
                )
            )
    return found


def matches(pattern: Any, value: Any) -> bool:
    """Whether `value` matches an event-filter `pattern` (the subset the template uses: nested
    objects, lists of literals or {"prefix": ...})."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches(p, value[k]) for k, p in pattern.items()
        )
    return any(
        (isinstance(option, dict) and isinstance(value, str) and value.startswith(option["prefix"]))
        or option == value
        for option in pattern
    )
