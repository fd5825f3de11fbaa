"""medsynth-bench: a reproducibility benchmark and leaderboard harness for controllable diffusion synthesis in medical imaging."""
__version__ = "0.1.0"
