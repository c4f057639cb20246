"""archive: the backup repository behind every server (no routes of its own).

WAL archiving and the pgBackRest stanza (`service`), the catalogue of backups (`records`),
backup schedules (`schedules`), the backup steps of create and delete workflows
(`lifecycle`) and logical dumps (`logical`). The instances, clusters, tenants and backups
domains use it; it uses none of them.
"""

from pgfleet.core.domain import Domain
from pgfleet.domains.archive import lifecycle, logical, records, schedules, service
from pgfleet.domains.archive.models import BackupScheduleUpdate, BackupScheduleView

# the first backup of a new instance or cluster, as its own operation
DOMAIN = Domain(name="archive", workflows=lifecycle.WORKFLOWS)

__all__ = [
    "DOMAIN",
    "BackupScheduleUpdate",
    "BackupScheduleView",
    "lifecycle",
    "logical",
    "records",
    "schedules",
    "service",
]
