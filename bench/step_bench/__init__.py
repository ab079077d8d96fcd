"""The parts of ``bench/trainer_step.py``: settings, workload, instrumentation, memory, the child
run, the summary and the report."""
