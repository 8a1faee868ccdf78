"""Wiring: settings, the ASGI application, TLS plumbing and the uvicorn runner."""
