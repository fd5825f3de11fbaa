from .method import DiDGen, DiDGenConfig

__all__ = ["DiDGen", "DiDGenConfig"]
