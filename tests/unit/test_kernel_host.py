"""The kernel class sessions run: ipykernel's, built without walking the zygote's modules."""

from __future__ import annotations

from portside.kernel.host import ForkedKernel, forked_kernel_fits, kernel_config


def test_the_installed_ipykernel_gets_the_forked_kernel() -> None:
    # An ipykernel whose constructor differs from ForkedKernel's falls back to its own class,
    # which costs each session start the module walk again: this says when that happens.
    assert forked_kernel_fits()
    assert kernel_config().IPKernelApp.kernel_class is ForkedKernel
