"""The worker's hot path: poll a batch, decode it, dead-letter the bad records, apply, commit.

Redis stores each partition's applied offset in the same script that applies a batch,
and consumption always resumes from there: a crash anywhere replays at most what Redis
does not hold yet, and a Redis that lost writes is noticed and read again. The group's
committed offsets only serve lag monitoring.

Modules, each with one job:

- stages.py: BatchPipeline, the three overlapped stages (decode, apply, tail).
- positions.py: where each partition resumes, from the offset markers in Redis.
- outages.py: retrying a failed backend with backoff, and probing the broker.
- clients.py: the aiokafka consumer and producer the pipeline runs on.
"""
