"""PID 1 of every warm container of the docker backend (run inside the container, see ``main``)."""
