"""CLI commands, one module each (see fbnas.cli.COMMAND_MODULES)."""
