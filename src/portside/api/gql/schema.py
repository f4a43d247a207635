"""The GraphQL schema served at ``/admin/gql``, assembled from one module per resource."""

from __future__ import annotations

import graphene

from .endpoint import EndpointQueries
from .image import ImageQueries
from .keypair import KeyPairMutations, KeyPairQueries
from .session import SessionQueries
from .vfolder import VFolderQueries


class Query(
    KeyPairQueries,
    SessionQueries,
    ImageQueries,
    EndpointQueries,
    VFolderQueries,
    graphene.ObjectType,
):
    pass


class Mutation(KeyPairMutations, graphene.ObjectType):
    pass


schema = graphene.Schema(query=Query, mutation=Mutation, auto_camelcase=False)
