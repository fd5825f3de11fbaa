from .method import RealOnly

__all__ = ["RealOnly"]
