"""The job use case: every document is a job, stored, run page by page, reported, resumed.

- :mod:`~app.jobs.models`: the record, options, a page's outcome, a job's error
- :mod:`~app.jobs.store`: the seam between deployments, composing :mod:`~app.jobs.repository` (where jobs are
  kept: this disk, or this disk and a shared bucket), :mod:`~app.jobs.ownership` (who runs which job: the sole
  owner, or leases in the bucket) and :mod:`~app.jobs.retention` (what is deleted when)
- :mod:`~app.jobs.admission`: shutdown, engine readiness, queue limits
- :mod:`~app.jobs.runner`: pages through the engines; :mod:`~app.jobs.assembly`: results and page images
- :mod:`~app.jobs.takeover` (with :mod:`~app.jobs.takeover_policy`), :mod:`~app.jobs.retention`: background tasks
- :mod:`~app.jobs.service`: the facade the API calls
"""
