"""Tasks: what the search and training engines learn on, and how it is scored (the contract and the
registry are facenar.tasks.base; each task registers itself in its own module)."""
from facenar.tasks.base import DEFAULT_TASK, TASKS, Task, check_task_options, get_task

__all__ = ["DEFAULT_TASK", "TASKS", "Task", "check_task_options", "get_task"]
