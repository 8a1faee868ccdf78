"""Runs the SessionStore conformance suite against SQLite and PostgreSQL."""

from tests.conformance.metadata_suite import *  # noqa: F403
