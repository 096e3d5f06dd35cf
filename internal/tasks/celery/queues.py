"""Queue names. A task names its queue where it is declared (tasks.py); the queues a worker
must consume follow from those declarations (``TASKS.queues()`` in internal/infra/celery.py)."""

DEFAULT_QUEUE = "default"
SLOW_QUEUE = "slow"
