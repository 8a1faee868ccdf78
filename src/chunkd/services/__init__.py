"""Domain services: the rules of each protocol family's own objects (containers and blocks, printers,
jobs and documents, data connectors, tus uploads, the image store), in typed records, on top of the core engine.
They know nothing of HTTP; front ends translate requests into their calls."""
