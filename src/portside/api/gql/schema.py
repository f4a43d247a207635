"""The GraphQL schema served at ``/admin/gql``, assembled from one module per resource."""

from __future__ import annotations

import graphene

from .image import ImageQueries
from .keypair import KeyPairMutations, KeyPairQueries
from .session import SessionQueries


class Query(KeyPairQueries, SessionQueries, ImageQueries, graphene.ObjectType):
    pass


class Mutation(KeyPairMutations, graphene.ObjectType):
    pass


schema = graphene.Schema(query=Query, mutation=Mutation, auto_camelcase=False)
