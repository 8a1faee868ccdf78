"""The protocol-agnostic upload-session engine: sessions, byte ranges, commits and expiry.

Nothing in this package knows HTTP. Front ends in :mod:`chunkd.protocols` translate requests into
calls on :class:`chunkd.core.engine.Engine` and its errors into their own wire formats.
"""
