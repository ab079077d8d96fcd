"""Subcommands of the ``sdpo`` command line (see ``sdpo_agent.cli``)."""
