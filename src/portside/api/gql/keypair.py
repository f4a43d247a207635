"""GraphQL types and fields for keypairs (the ``keypair`` query the official client sends)."""

from __future__ import annotations

from typing import Any

import graphene

from portside.services import identity
from portside.services.identity import KeyPairInfo

from .context import ctx


class KeyPair(graphene.ObjectType):
    user_id = graphene.String(description="The owner's email (Backend.AI's legacy name).")
    user = graphene.UUID()
    access_key = graphene.String()
    secret_key = graphene.String()
    is_active = graphene.Boolean()
    is_admin = graphene.Boolean()
    resource_policy = graphene.String()
    rate_limit = graphene.Int()
    created_at = graphene.DateTime()
    modified_at = graphene.DateTime()
    last_used = graphene.DateTime()
    projects = graphene.List(graphene.String)
    concurrency_used = graphene.Int()
    num_queries = graphene.Int()
    ssh_public_key = graphene.String()
    bootstrap_script = graphene.String()

    @staticmethod
    def resolve_user_id(root: KeyPairInfo, info: Any) -> str:
        return root.user_email

    @staticmethod
    def resolve_user(root: KeyPairInfo, info: Any) -> str:
        return root.user_uuid

    @staticmethod
    async def resolve_concurrency_used(root: KeyPairInfo, info: Any) -> int:
        return await ctx(info).platform.count_active_sessions(access_key=root.access_key)

    @staticmethod
    def resolve_num_queries(root: KeyPairInfo, info: Any) -> int:
        return 0

    @staticmethod
    def resolve_ssh_public_key(root: KeyPairInfo, info: Any) -> None:
        return None

    @staticmethod
    def resolve_bootstrap_script(root: KeyPairInfo, info: Any) -> str:
        return ""


class KeyPairList(graphene.ObjectType):
    items = graphene.List(graphene.NonNull(KeyPair), required=True)
    total_count = graphene.Int(required=True)


class KeyPairInput(graphene.InputObjectType):
    is_active = graphene.Boolean(default_value=True)
    is_admin = graphene.Boolean(default_value=False)
    resource_policy = graphene.String(default_value="default")
    rate_limit = graphene.Int()


class ModifyKeyPairInput(graphene.InputObjectType):
    is_active = graphene.Boolean()
    is_admin = graphene.Boolean()
    resource_policy = graphene.String()
    rate_limit = graphene.Int()


class KeyPairQueries(graphene.ObjectType):
    keypair = graphene.Field(KeyPair, domain_name=graphene.String(), access_key=graphene.String())
    keypairs = graphene.List(
        KeyPair,
        domain_name=graphene.String(),
        email=graphene.String(),
        is_active=graphene.Boolean(),
    )
    keypair_list = graphene.Field(
        KeyPairList,
        limit=graphene.Int(required=True),
        offset=graphene.Int(required=True),
        domain_name=graphene.String(),
        email=graphene.String(),
        is_active=graphene.Boolean(),
        filter=graphene.String(),
        order=graphene.String(),
    )

    @staticmethod
    async def resolve_keypair(
        root: Any, info: Any, domain_name: str | None = None, access_key: str | None = None
    ) -> KeyPairInfo:
        c = ctx(info)
        return await identity.get_keypair(c.platform, c.principal, access_key)

    @staticmethod
    async def resolve_keypairs(
        root: Any,
        info: Any,
        domain_name: str | None = None,
        email: str | None = None,
        is_active: bool | None = None,
    ) -> list[KeyPairInfo]:
        c = ctx(info)
        return await identity.list_keypairs(
            c.platform, c.principal, email=email, is_active=is_active
        )

    @staticmethod
    async def resolve_keypair_list(
        root: Any,
        info: Any,
        limit: int,
        offset: int,
        domain_name: str | None = None,
        email: str | None = None,
        is_active: bool | None = None,
        filter: str | None = None,
        order: str | None = None,
    ) -> dict[str, Any]:
        c = ctx(info)
        items = await identity.list_keypairs(
            c.platform, c.principal, email=email, is_active=is_active
        )
        return {"items": items[offset : offset + limit], "total_count": len(items)}


class CreateKeyPair(graphene.Mutation):
    class Arguments:
        user_id = graphene.String(required=True)
        props = KeyPairInput(required=True)

    ok = graphene.Boolean()
    msg = graphene.String()
    keypair = graphene.Field(KeyPair)

    @staticmethod
    async def mutate(root: Any, info: Any, user_id: str, props: Any) -> CreateKeyPair:
        c = ctx(info)
        keypair = await identity.create_keypair(
            c.platform,
            c.principal,
            email=user_id,
            is_admin=bool(props.is_admin),
            is_active=props.is_active is not False,
            resource_policy=props.resource_policy or "default",
        )
        return CreateKeyPair(ok=True, msg="success", keypair=keypair)


class ModifyKeyPair(graphene.Mutation):
    class Arguments:
        access_key = graphene.String(required=True)
        props = ModifyKeyPairInput(required=True)

    ok = graphene.Boolean()
    msg = graphene.String()

    @staticmethod
    async def mutate(root: Any, info: Any, access_key: str, props: Any) -> ModifyKeyPair:
        c = ctx(info)
        await identity.modify_keypair(
            c.platform,
            c.principal,
            access_key,
            is_active=props.is_active,
            is_admin=props.is_admin,
            resource_policy=props.resource_policy,
            rate_limit=props.rate_limit,
        )
        return ModifyKeyPair(ok=True, msg="success")


class DeleteKeyPair(graphene.Mutation):
    class Arguments:
        access_key = graphene.String(required=True)

    ok = graphene.Boolean()
    msg = graphene.String()

    @staticmethod
    async def mutate(root: Any, info: Any, access_key: str) -> DeleteKeyPair:
        c = ctx(info)
        await identity.delete_keypair(c.platform, c.principal, access_key)
        return DeleteKeyPair(ok=True, msg="success")


class KeyPairMutations(graphene.ObjectType):
    create_keypair = CreateKeyPair.Field()
    modify_keypair = ModifyKeyPair.Field()
    delete_keypair = DeleteKeyPair.Field()
