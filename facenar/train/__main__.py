"""python -m facenar.train (the command line is facenar/train/cli.py)."""
from facenar_runtime.cli import run_cli
from facenar.train.cli import main

run_cli(main)
