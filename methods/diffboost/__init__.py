from .method import DiffBoost, DiffBoostConfig

__all__ = ["DiffBoost", "DiffBoostConfig"]
