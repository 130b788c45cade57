"""The project-wide runtime, torch-free: errors and exit codes, the CLI boundary, bounded text input,
atomic writes, the output guard, paths and the restricted unpickler. Both `facenar` and `data_tools`
stand on it; it imports neither."""
