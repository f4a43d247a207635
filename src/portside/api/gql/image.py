"""GraphQL: ``images`` and ``image``, the runtimes this server maps image references to."""

from __future__ import annotations

from typing import Any

import graphene

from portside.images import Image as ImageEntry

from .context import ctx


class KVPair(graphene.ObjectType):
    key = graphene.String()
    value = graphene.String()


class ResourceLimit(graphene.ObjectType):
    key = graphene.String()
    min = graphene.String()
    max = graphene.String()


class Image(graphene.ObjectType):
    id = graphene.String()
    name = graphene.String()
    reference = graphene.String(description="The canonical reference, as sessions name it.")
    registry = graphene.String()
    architecture = graphene.String()
    tag = graphene.String()
    digest = graphene.String()
    size_bytes = graphene.BigInt()
    aliases = graphene.List(graphene.String)
    labels = graphene.List(KVPair)
    resource_limits = graphene.List(ResourceLimit)
    installed = graphene.Boolean()
    python = graphene.String(description="The interpreter that runs this image's kernels.")


def _image(entry: ImageEntry) -> dict[str, Any]:
    ports = ",".join(f"{app.name}:{app.protocol}:{app.port}" for app in entry.apps)
    return {
        "id": entry.name,
        "name": entry.repository,
        "reference": entry.name,
        "registry": entry.registry,
        "architecture": entry.architecture,
        "tag": entry.tag,
        "digest": None,
        "size_bytes": 0,
        "aliases": list(entry.aliases),
        "labels": [{"key": "ai.backend.service-ports", "value": ports}] if ports else [],
        "resource_limits": [
            {"key": k, "min": str(v), "max": None} for k, v in sorted(entry.min_slots.items())
        ],
        "installed": True,
        "python": entry.python,
    }


class ImageQueries(graphene.ObjectType):
    images = graphene.List(Image, is_installed=graphene.Boolean(), is_operation=graphene.Boolean())
    image = graphene.Field(
        Image, reference=graphene.String(required=True), architecture=graphene.String()
    )

    @staticmethod
    def resolve_images(root: Any, info: Any, **kwargs: Any) -> list[dict[str, Any]]:
        return [_image(entry) for entry in ctx(info).platform.images]

    @staticmethod
    def resolve_image(
        root: Any, info: Any, reference: str, architecture: str | None = None
    ) -> dict[str, Any]:
        return _image(ctx(info).platform.images.resolve(reference))
