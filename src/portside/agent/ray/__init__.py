"""The Ray backend: sessions placed across the nodes of a Ray cluster by their resources.

Turn it on with ``[agent] backend = "ray"`` and ``ray_address``: ``"local"`` (the default)
starts a Ray head inside ``portside serve``, on 127.0.0.1, to try it on one machine; a cluster's
``host:port`` (or ``"auto"``) joins a cluster made with ``ray start``.  Every node needs Portside
installed (``pip install 'portside[ray]'``) in the interpreter Ray runs there, any interpreter
an image names, and bubblewrap where kernels are to be sandboxed; data folders must be at the
same path on every node (a shared file system).  Importing this package needs Ray; the server
imports it only for this backend.

- ``cluster.py``: joining or starting the cluster; slots to Ray resources and back.
- ``placement.py``: one placement group per session: Ray's queue decides when and where.
- ``node.py``: the node agent, an actor per node running the local backend there.
- ``nodes.py``: the API server's handles on the node agents, and their kernel exits.
- ``relay.py``: each node's TCP relay from the app proxy to the apps in its sessions.
- ``agent.py``: the Agent protocol over all of it.
"""
