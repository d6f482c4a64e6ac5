"""Built-in task categories, one module per family; listed in envs.tasks.BUILTIN_TASKS."""
