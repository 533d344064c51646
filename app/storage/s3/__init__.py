"""Everything that talks to S3 (Cloud.ru Object Storage): client, key layout, objects, mirror, outbox."""
