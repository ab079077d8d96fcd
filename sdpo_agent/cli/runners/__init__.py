"""What each heavy command runs once its arguments were checked: ``run(args) -> int`` per
command, reached only through ``sdpo_agent.cli.RUNNERS`` (these modules import torch)."""
