"""Development scripts (soak tests, sample scenes, calibration, speech evaluation).

Run them from the checkout root as modules, ``python -m scripts.NAME …``: Python puts the
root on the import path, so ``agent`` (installed, or the checkout's) and ``testbed`` import
without any path manipulation. Model builds are ``edge-agent models build`` (agent.build).
"""
