"""The training wing: train a fixed architecture on a task, on one or many processes, with exact resume."""
