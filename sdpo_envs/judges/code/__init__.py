"""The code judge: find the program in an answer, run it against test cases in a sandbox,
turn the harness's report into a verdict and online-judge style feedback (its public names
are exported by ``sdpo_envs.judges``).

``extract`` finds the program; ``cases`` parses test cases; ``judge`` runs the harness
(``harness``, shipped by ``build``) through a sandbox backend; ``results`` holds what it
decides (and under which limits); ``feedback`` writes the text.
"""
