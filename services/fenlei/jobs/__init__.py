"""Training and tuning as a service: a queue of jobs, each run by a worker process."""
