"""``python -m paygate``: the ``paygate`` command, where the console script is not on PATH."""

from paygate.cli import main

if __name__ == "__main__":
    main()
