from .method import DisenDiff, DisenDiffConfig

__all__ = ["DisenDiff", "DisenDiffConfig"]
