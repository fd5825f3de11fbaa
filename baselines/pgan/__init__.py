from .method import PGAN, PGANConfig

__all__ = ["PGAN", "PGANConfig"]
