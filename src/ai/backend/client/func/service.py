"""Model services (wire-protocol.md section 4.3).

``Service.create`` returns a handle that reads like the dict the official client returns and
also has the methods the examples page calls on it (``info()``, ``generate_api_token()``).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from ..pagination import PaginatedResult, fetch_paginated_result
from .admin import run_graphql
from .base import BaseFunction, api_function

__all__ = ("DEFAULT_SERVICE_FIELDS", "Service")

DEFAULT_SERVICE_FIELDS = (
    "endpoint_id",
    "name",
    "image_object { name }",
    "replicas",
    "routings { routing_id session status traffic_ratio }",
    "url",
    "session_owner",
    "open_to_public",
)


class Service(dict[str, Any], BaseFunction):
    """A model service endpoint, addressed by its id (``api_session.Service(endpoint_id)``)."""

    def __init__(self, id: uuid.UUID | str, data: Mapping[str, Any] | None = None) -> None:
        super().__init__(data or {})
        self.id = id if isinstance(id, uuid.UUID) else uuid.UUID(str(id))

    def __repr__(self) -> str:
        return f"Service({self.id}, {dict.__repr__(self)})"

    @classmethod
    @api_function
    async def create(
        cls,
        image: str,
        model_id_or_name: str,
        initial_session_count: int = 1,
        *,
        service_name: str | None = None,
        resources: Mapping[str, Any] | None = None,
        resource_opts: Mapping[str, Any] | None = None,
        envs: Mapping[str, str] | None = None,
        domain_name: str | None = None,
        group_name: str | None = None,
        scaling_group: str | None = None,
        model_mount_destination: str | None = None,
        model_definition_path: str | None = None,
        runtime_variant: str = "custom",
        open_to_public: bool | None = None,
        expose_to_public: bool | None = None,
        owner_access_key: str | None = None,
        architecture: str | None = None,
    ) -> Service:
        """Deploys ``initial_session_count`` replicas of the model in ``model_id_or_name``.

        ``open_to_public`` (the examples page) and ``expose_to_public`` (today's official
        client) mean the same: the endpoint then takes requests without a token.
        """
        session = cls._current_session()
        public = bool(open_to_public) or bool(expose_to_public)
        body: dict[str, Any] = {
            "name": service_name,
            "replicas": initial_session_count,
            "image": image,
            "arch": architecture,
            "group": group_name or session.config.group,
            "domain": domain_name or session.config.domain,
            "runtime_variant": runtime_variant,
            "open_to_public": public,
            "owner_access_key": owner_access_key,
            "config": {
                "model": model_id_or_name,
                "model_mount_destination": model_mount_destination,
                "model_definition_path": model_definition_path,
                "environ": dict(envs) if envs else None,
                "scaling_group": scaling_group or "default",
                "resources": dict(resources) if resources else None,
                "resource_opts": dict(resource_opts) if resource_opts else None,
            },
        }
        body = {k: v for k, v in body.items() if v is not None}
        body["config"] = {k: v for k, v in body["config"].items() if v is not None}
        rqst = cls._request("POST", "/services")
        rqst.set_json(body)
        async with rqst.fetch() as resp:
            info: dict[str, Any] = await resp.json()
        return cls(info["endpoint_id"], info)

    @classmethod
    @api_function
    async def list(cls, name: str | None = None) -> list[dict[str, Any]]:
        params = {"name": name} if name else None
        async with cls._request("GET", "/services", params=params).fetch() as resp:
            result: list[dict[str, Any]] = await resp.json()
            return result

    @classmethod
    @api_function
    async def paginated_list(
        cls,
        *,
        fields: Sequence[str] = DEFAULT_SERVICE_FIELDS,
        page_offset: int = 0,
        page_size: int = 20,
        filter: str | None = None,
        order: str | None = None,
    ) -> PaginatedResult[dict[str, Any]]:
        variables = {"filter": (filter, "String"), "order": (order, "String")}
        return await fetch_paginated_result(
            cls._current_session(),
            "endpoint_list",
            variables,
            list(fields),
            page_offset=page_offset,
            page_size=page_size,
        )

    @classmethod
    @api_function
    async def detail(
        cls, service_id: uuid.UUID | str, fields: Sequence[str] = DEFAULT_SERVICE_FIELDS
    ) -> dict[str, Any]:
        query = (
            "query($endpoint_id: UUID!) { endpoint(endpoint_id: $endpoint_id) { "
            + " ".join(fields)
            + " } }"
        )
        data = await run_graphql(cls._current_session(), query, {"endpoint_id": str(service_id)})
        result: dict[str, Any] = data["endpoint"]
        return result

    @api_function
    async def info(self) -> dict[str, Any]:
        """The service's state; ``url`` (also ``service_endpoint``) is None until a replica
        is healthy."""
        async with self._request("GET", f"/services/{self.id}").fetch() as resp:
            result: dict[str, Any] = await resp.json()
        result.setdefault("url", result.get("service_endpoint"))
        result.setdefault("service_endpoint", result.get("url"))
        self.update(result)
        return result

    @api_function
    async def generate_api_token(
        self, duration: str | float | None = None, valid_until: int | None = None
    ) -> dict[str, Any]:
        """A JWT for requests to the service, valid for ``duration`` (``"3600s"``, ``"1h"``)."""
        body: dict[str, Any] = {}
        if valid_until is not None:
            body["valid_until"] = valid_until
        else:
            body["duration"] = duration if duration is not None else "1h"
        rqst = self._request("POST", f"/services/{self.id}/token")
        rqst.set_json(body)
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def scale(self, to: int) -> dict[str, Any]:
        rqst = self._request("POST", f"/services/{self.id}/scale")
        rqst.set_json({"to": to})
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def sync(self) -> dict[str, Any]:
        async with self._request("POST", f"/services/{self.id}/sync").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def delete(self) -> dict[str, Any]:
        async with self._request("DELETE", f"/services/{self.id}").fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def update_traffic_ratio(self, route_id: uuid.UUID | str, ratio: float) -> dict[str, Any]:
        rqst = self._request("PUT", f"/services/{self.id}/routings/{route_id}")
        rqst.set_json({"traffic_ratio": ratio})
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result

    @api_function
    async def downscale_single_route(self, route_id: uuid.UUID | str) -> dict[str, Any]:
        rqst = self._request("DELETE", f"/services/{self.id}/routings/{route_id}")
        async with rqst.fetch() as resp:
            result: dict[str, Any] = await resp.json()
            return result
