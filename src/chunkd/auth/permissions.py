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

# Microsoft Graph Universal Print (seeds 001/004). Delegated: all five as scopes; application: the .All ones.
PRINTJOB_READ = "PrintJob.Read"  # read one's own jobs, documents and upload sessions
PRINTJOB_READWRITE = "PrintJob.ReadWrite"  # create and upload one's own jobs
PRINTJOB_READ_ALL = "PrintJob.Read.All"  # read every job of the tenant
PRINTJOB_READWRITE_ALL = "PrintJob.ReadWrite.All"  # create and upload any job of the tenant
PRINTJOB_CREATE = "PrintJob.Create"  # create one's own jobs and upload their documents (not read them)
PRINTERS_CREATE = "Printers.Create"  # register printers in one's tenant (chunkd's admin route)
ALL_ROLES += (PRINTJOB_READ_ALL, PRINTJOB_READWRITE_ALL, PRINTERS_CREATE)

# Microsoft Graph Industry Data (seed 000). Delegated and application alike (Upload is an application permission too).
INDUSTRYDATA_UPLOAD = "IndustryData-DataConnector.Upload"  # getUploadSession and validate only
INDUSTRYDATA_READWRITE_ALL = "IndustryData-DataConnector.ReadWrite.All"  # connectors: create/read/update/delete
INDUSTRYDATA_READ_ALL = "IndustryData-DataConnector.Read.All"  # list and read connectors
INDUSTRYDATA_READBASIC_ALL = "IndustryData.ReadBasic.All"  # read operations (validation results)
ALL_ROLES += (INDUSTRYDATA_READWRITE_ALL, INDUSTRYDATA_READBASIC_ALL)

# chunkd's own admin API (/chunkd/v1): see and cancel every owner's sessions, read server counters.
CHUNKD_ADMIN = "Chunkd.Admin"
ALL_ROLES += (CHUNKD_ADMIN,)
