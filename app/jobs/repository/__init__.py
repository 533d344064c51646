"""Where jobs are kept: records, documents, finished pages and results (persistence only; who runs which job is
:mod:`app.jobs.ownership`). :class:`~app.jobs.repository.base.JobRepository` is the interface;
:class:`~app.jobs.repository.local.LocalRepository` keeps jobs on this replica's disk,
:class:`~app.jobs.repository.s3.S3Repository` adds a bucket shared by every replica to such a disk (composition)."""
