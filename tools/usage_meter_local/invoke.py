"""Invoke the functions of template.yaml in-process, by route, with payload-2.0 events."""

from __future__ import annotations

import base64
import json
from typing import Any

from pydantic import BaseModel

from usage_meter_local.events import LambdaContext, http_event
from usage_meter_local.handlers import Handler, load_handler
from usage_meter_local.template import Route, authorizer_function, function_code, routes

JSON = "application/json"


class Answer(BaseModel):
    """What the gateway would send back: status, headers, raw body (and its JSON, if any)."""

    status: int
    headers: dict[str, str]
    body: str

    def json(self) -> Any:  # type: ignore[override]
        from usage_meter import jsonutil

        return jsonutil.loads(self.body) if self.body else None


def to_answer(result: dict[str, Any]) -> Answer:
    """A handler's payload-2.0 result as the client sees it."""
    body = result.get("body") or ""
    if result.get("isBase64Encoded"):
        body = base64.b64decode(body).decode()
    headers = {k.lower(): str(v) for k, v in (result.get("headers") or {}).items()}
    for key, values in (result.get("multiValueHeaders") or {}).items():
        headers[key.lower()] = ",".join(values)
    return Answer(status=int(result.get("statusCode", 200)), headers=headers, body=body)


class LocalApi:
    """The API's routes from template.yaml, each bound to its handler (loaded on first use).

    `timeout_s` is the time each invocation's Lambda context gives the handler (Lambda's 10 s
    by default): the track function works to it.
    """

    def __init__(self, *, timeout_s: int = 10) -> None:
        self.routes = routes()
        self.timeout_s = timeout_s
        self._handlers: dict[str, Handler] = {}

    def route(self, method: str, path: str) -> Route | None:
        for route in self.routes:
            if route.match(method, path) is not None:
                return route
        return None

    def handler(self, route: Route) -> Handler:
        if route.function not in self._handlers:
            self._handlers[route.function] = load_handler(route.code_uri, route.handler)
        return self._handlers[route.function]

    def invoke_event(self, route: Route, event: dict[str, Any]) -> Answer:
        return to_answer(self.handler(route)(event, LambdaContext(route.function, timeout_s=self.timeout_s)))

    def authorize(self, route: Route, event: dict[str, Any]) -> dict[str, Any] | None:
        """Run the route's Lambda authorizer as API Gateway does (payload 2.0, simple response).

        Returns the context to put in the event, or None when the authorizer said no.
        """
        assert route.authorizer is not None
        function = authorizer_function(route.authorizer)
        if function not in self._handlers:
            self._handlers[function] = load_handler(*function_code(function))
        request = {
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": f"arn:aws:execute-api:us-east-1:123456789012:local/$default/{route.method}"
            f"{route.path}",
            "identitySource": [],
            "routeKey": event["routeKey"],
            "rawPath": event["rawPath"],
            "rawQueryString": event["rawQueryString"],
            "headers": event["headers"],
            "queryStringParameters": event.get("queryStringParameters", {}),
            "requestContext": {k: v for k, v in event["requestContext"].items() if k != "authorizer"},
        }
        answer = self._handlers[function](request, LambdaContext(function))
        if not answer.get("isAuthorized"):
            return None
        context: dict[str, Any] = answer.get("context") or {}
        return context

    def send(self, route: Route, event: dict[str, Any]) -> Answer:
        """What API Gateway does with a request: authorize (if the route says so), then invoke."""
        if route.authorizer:
            context = self.authorize(route, event)
            if context is None:
                return Answer(status=403, headers={"content-type": JSON}, body='{"message":"Forbidden"}')
            event["requestContext"]["authorizer"] = {"lambda": context}
        return self.invoke_event(route, event)

    def call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        headers: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        authorizer: dict[str, Any] | None = None,
        run_authorizer: bool = False,
    ) -> Answer:
        """One request; a non-str body is sent as JSON. 404 for a path the template does not route.

        With `run_authorizer` the route's authorizer resolves the headers (as deployed);
        otherwise `authorizer` is put in the event as the authorizer's context.
        """
        route = self.route(method, path)
        if route is None:
            return Answer(status=404, headers={}, body=json.dumps({"message": "Not Found"}))
        text = body if isinstance(body, str | bytes) or body is None else json.dumps(body)
        sent_headers = {"content-type": "application/json", **(headers or {})}
        event = http_event(
            method,
            path,
            body=text,
            headers=sent_headers,
            query=query,
            authorizer=authorizer,
            route_key=f"{route.method} {route.path}",
            path_parameters=route.match(method, path),
        )
        if run_authorizer:
            return self.send(route, event)
        return self.invoke_event(route, event)
