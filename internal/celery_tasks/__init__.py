"""The app's Celery client, built once per process from settings.

Import this package (never ``internal.celery_tasks.__init__``, which would load it a second
time under another name and connect every signal handler twice).
"""

from internal.config.setting import get_settings
from internal.infra.celery import TASKS, build_celery_client

task_catalog = TASKS
default_queue = TASKS.default_queue
default_celery_client = build_celery_client(get_settings())
app = default_celery_client.app  # for `celery -A internal.celery_tasks ...`

__all__ = ["app", "default_celery_client", "default_queue", "task_catalog"]
