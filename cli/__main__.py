"""``python -m cli <command>``: the ``covidtech`` command without its console script."""

from cli.main import main

main()
