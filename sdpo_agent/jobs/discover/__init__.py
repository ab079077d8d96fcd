"""``sdpo discover``: test-time SDPO on single questions against best-of-k and multi-turn retries."""
