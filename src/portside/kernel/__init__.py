"""What runs inside a session's sandbox: the kernel process and its helpers.

Nothing here imports the server; the kernel process is forked from a zygote that preloads these
modules together with ipykernel, so a new kernel costs a fork, not an interpreter start.
"""

#: The FIFO in a kernel's run directory through which the kernel tells the agent it is up
#: (``LocalKernel.expect_ready`` makes it, ``host.announce_ready`` writes to it).
READY_FIFO = "ready"

#: The key of an ``execute_reply``'s metadata that says how many IOPub messages the request
#: published before its reply (``host.ForkedKernel``): the agent waits for that many instead of
#: the ``idle`` status, which then never comes.
IOPUB_COUNT_KEY = "portside_iopub"
