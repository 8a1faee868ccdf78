"""Permission names, as the seeds and the protocols' users know them.

Graph families use the seeds' names as delegated scopes (``scp``) or application roles (``roles``).
chunkd's own families use app roles named below. ``chunkd token`` without scopes or roles grants every
role in :data:`ALL_ROLES`.
"""

IMAGESTORE_ADMIN = "ImageStore.Admin"  # write to the Service Fabric image store (reads need any token)
IMAGESTORE_READ = "ImageStore.Read"

TUS_READWRITE = "Tus.ReadWrite"  # create, append to, terminate and read one's own tus uploads
TUS_READ = "Tus.Read"  # HEAD/GET of one's own tus uploads

ALL_ROLES: tuple[str, ...] = (IMAGESTORE_ADMIN, TUS_READWRITE,)
