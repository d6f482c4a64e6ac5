"""Task environments: task categories (`envs.tasks`), built-ins (`envs.builtin`), agents (`envs.agents`)."""
