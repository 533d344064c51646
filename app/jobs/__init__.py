"""The job use case: every document is a job, stored, run page by page, reported, resumed.

- :mod:`~app.jobs.models`: the record, options, a page's outcome, a job's error
- :mod:`~app.jobs.store`: where jobs live — the seam; :mod:`~app.jobs.local_store` (one replica, its disk) and
  :mod:`~app.jobs.s3_store` (replicas sharing a bucket, with :mod:`~app.jobs.leases`)
- :mod:`~app.jobs.admission`: shutdown, engine readiness, queue limits
- :mod:`~app.jobs.runner`: pages through the engines; :mod:`~app.jobs.assembly`: results and page images
- :mod:`~app.jobs.takeover`, :mod:`~app.jobs.retention`: background tasks
- :mod:`~app.jobs.service`: the facade the API calls
"""
