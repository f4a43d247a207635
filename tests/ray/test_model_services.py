"""Model-service replicas on the Ray backend: tests/integration's own test, collected here.

Three replicas of one service are three sessions Ray places wherever it finds room; the
ingress reaches each through its node's relay, and scaling up and down loses no request.
"""

from __future__ import annotations

from ..integration.test_model_services import (
    model_folder,
    new_service,
    test_scaling_up_and_down_loses_no_requests,
)

__all__ = ["model_folder", "new_service", "test_scaling_up_and_down_loses_no_requests"]
