"""Speed and cost benchmarks; each module runs as `python -m benchmarks.NAME`."""
