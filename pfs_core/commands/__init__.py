"""The commands of ``python -m pfs_core``: one module each (``HELP``, ``add_arguments``, ``run``), thin.

They parse arguments and call the package's API; :mod:`pfs_core.commands.options` holds the shared options.
"""
