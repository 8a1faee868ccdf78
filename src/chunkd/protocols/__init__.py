"""HTTP front ends, one module per protocol family. They translate only: HTTP in, engine calls, protocol
errors out. They import :mod:`chunkd.core` and :mod:`chunkd.auth`, never storage or SQL code."""
