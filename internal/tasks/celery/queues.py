"""Queue names and task names: the one place the worker command, routes and API agree on."""

DEFAULT_QUEUE = "default"
SLOW_QUEUE = "slow"
# What a worker must consume to run every routed task: the compose workers are started with
# this list. (The worker launcher alone, with no -Q flag, consumes DEFAULT_QUEUE only.)
ALL_QUEUES = (DEFAULT_QUEUE, SLOW_QUEUE)

# Task names are explicit so that renaming a module never changes a name on the wire.
ADD = "tasks.add"
LONG_REPORT = "tasks.long_report"
FLAKY_FETCH = "tasks.flaky_fetch"
HEARTBEAT = "tasks.heartbeat"
RECORD_ORDER = "tasks.record_order"
