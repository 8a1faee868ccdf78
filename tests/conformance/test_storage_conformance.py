"""Runs the ByteStorage conformance suite against every implementation in ``IMPLEMENTATIONS``."""

from tests.conformance.storage_suite import *  # noqa: F403
