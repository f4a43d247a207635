"""What runs inside a session's sandbox: the kernel process and its helpers.

Nothing here imports the server; the kernel process is forked from a zygote that preloads these
modules together with ipykernel, so a new kernel costs a fork, not an interpreter start.
"""
