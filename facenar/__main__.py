"""python -m facenar COMMAND: the same as the `facenar` console script."""
from facenar.commands import main

main()
