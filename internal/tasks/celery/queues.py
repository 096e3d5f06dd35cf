"""Queue names and task names: the one place the worker command, routes and API agree on."""

DEFAULT_QUEUE = "default"
SLOW_QUEUE = "slow"
# What `services/run_celery_worker.py` consumes with no -Q flag, and what a worker must consume
# to run every routed task (the compose worker is started with this list).
ALL_QUEUES = (DEFAULT_QUEUE, SLOW_QUEUE)

# Task names are explicit so that renaming a module never changes a name on the wire.
ADD = "tasks.add"
LONG_REPORT = "tasks.long_report"
FLAKY_FETCH = "tasks.flaky_fetch"
HEARTBEAT = "tasks.heartbeat"
RECORD_ORDER = "tasks.record_order"
POISON_PILL = "tasks.poison_pill"
