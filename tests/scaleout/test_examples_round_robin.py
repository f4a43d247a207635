"""The seed's examples, unchanged, against two servers behind one round-robin address.

The tests are tests/e2e's own, collected here again: this package's ``server`` fixture is the
balancer, so consecutive calls of one example (create, execute, continue, destroy, open an
app) are served by different servers.
"""

from __future__ import annotations

from ..e2e.conftest import client
from ..e2e.test_app_examples import (
    test_links_need_their_permit_and_a_live_session,
    test_start_service_example_opens_a_terminal_in_a_browser,
)
from ..e2e.test_initialization_examples import (
    test_async_session,
    test_explicit_configuration,
    test_implicit_configuration,
)
from ..e2e.test_session_examples import (
    example_folders,
    test_async_mode,
    test_async_mode_user_input,
    test_batch_mode,
    test_create_destroy,
    test_list_running_sessions,
    test_media_png,
    test_query_mode,
    test_user_input_batch_mode,
    test_user_input_query_mode,
    two_running_sessions,
)

__all__ = [
    "client",
    "example_folders",
    "test_async_mode",
    "test_async_mode_user_input",
    "test_async_session",
    "test_batch_mode",
    "test_create_destroy",
    "test_explicit_configuration",
    "test_implicit_configuration",
    "test_links_need_their_permit_and_a_live_session",
    "test_list_running_sessions",
    "test_media_png",
    "test_query_mode",
    "test_start_service_example_opens_a_terminal_in_a_browser",
    "test_user_input_batch_mode",
    "test_user_input_query_mode",
    "two_running_sessions",
]
