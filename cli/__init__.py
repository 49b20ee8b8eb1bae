"""The shell: the ``covidtech`` command and the demo, which start and drive every process.

It sits above the others: it imports the kernel (``covidtech``), the processes (``api``,
``producers``, ``streams``) and the operations (``infra``, ``simulator``); nothing imports it.
``python -m cli <command>`` is the ``covidtech`` command.
"""
