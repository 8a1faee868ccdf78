"""Authentication shared by every API family: bearer JWTs and TLS client certificates."""
