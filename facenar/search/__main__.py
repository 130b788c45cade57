"""python -m facenar.search (the command line is facenar/search/cli.py)."""
from facenar_runtime.cli import run_cli
from facenar.search.cli import main

run_cli(main)
