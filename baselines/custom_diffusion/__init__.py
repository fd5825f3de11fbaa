from .method import CustomDiffusion, CustomDiffusionConfig

__all__ = ["CustomDiffusion", "CustomDiffusionConfig"]
