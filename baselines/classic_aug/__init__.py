from .method import ClassicAug, ClassicAugConfig

__all__ = ["ClassicAug", "ClassicAugConfig"]
