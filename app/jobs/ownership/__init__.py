"""Who runs which job: the sole owner on one disk, leases in the bucket for replicas that share one.

- :mod:`~app.jobs.ownership.lease`: a lease's content and the pure decisions taken on it (crash counting).
- :mod:`~app.jobs.ownership.observer`: expiry as this replica observes it (its own monotonic time, never clocks).
- :mod:`~app.jobs.ownership.leases`: the protocol on conditional writes (create, claim, renew, fence, end, hand back).
- :mod:`~app.jobs.ownership.keeper`: the thread that renews, observes and ends leases.
- :mod:`~app.jobs.ownership.bucket`: what the protocol needs of a bucket (S3, or the tests' in-memory one).
"""
