"""The ``jtca`` command line, a client of the authority service: one module per command
(``COMMANDS`` in ``main``), each registering its subcommands; the console script is
``ca.__main__``."""
