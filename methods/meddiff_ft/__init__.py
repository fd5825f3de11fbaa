from .method import MedDiffFT, MedDiffFTConfig

__all__ = ["MedDiffFT", "MedDiffFTConfig"]
