"""python -m facenar.verify (the command line is facenar/verify/cli.py)."""
from facenar_runtime.cli import run_cli
from facenar.verify.cli import main

run_cli(main)
