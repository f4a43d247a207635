"""The seed's examples against a server on the Ray backend, with our SDK.

These are tests/e2e's own tests, collected here a second time: in this package ``server`` is
the Ray-backed server of conftest.py and ``client`` is our SDK, so each example runs exactly as
it does on the local backend, with its session on whichever node Ray chose.  Example 05 asks for
8 CPUs, 32 GiB and 2 CUDA devices, which only node 2 has; example 06 opens the web terminal
through the app proxy, which reaches the session through its node's relay.
"""

from __future__ import annotations

from ..e2e.test_app_examples import (
    test_links_need_their_permit_and_a_live_session,
    test_start_service_example_opens_a_terminal_in_a_browser,
    test_start_service_request_example,
)
from ..e2e.test_initialization_examples import test_implicit_configuration
from ..e2e.test_session_examples import (
    example_folders,
    fresh_keypair_env,
    test_async_mode,
    test_async_mode_user_input,
    test_batch_mode,
    test_create_destroy,
    test_create_destroy_without_mounts,
    test_list_running_sessions,
    test_list_running_sessions_when_there_are_none,
    test_media_png,
    test_query_mode,
    test_user_input_batch_mode,
    test_user_input_query_mode,
    two_running_sessions,
)

__all__ = [
    "example_folders",
    "fresh_keypair_env",
    "test_async_mode",
    "test_async_mode_user_input",
    "test_batch_mode",
    "test_create_destroy",
    "test_create_destroy_without_mounts",
    "test_implicit_configuration",
    "test_links_need_their_permit_and_a_live_session",
    "test_list_running_sessions",
    "test_list_running_sessions_when_there_are_none",
    "test_media_png",
    "test_query_mode",
    "test_start_service_example_opens_a_terminal_in_a_browser",
    "test_start_service_request_example",
    "test_user_input_batch_mode",
    "test_user_input_query_mode",
    "two_running_sessions",
]
