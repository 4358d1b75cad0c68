"""Background work: the pipeline worker, the outbox sender, the forwarder, scheduled jobs
and the leader lock."""
