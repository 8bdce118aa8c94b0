"""``python -m paygate.cli``: the ``paygate`` command."""

from paygate.cli import main

if __name__ == "__main__":
    main()
