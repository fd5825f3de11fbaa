from .method import CxrIrgen, CxrIrgenConfig

__all__ = ["CxrIrgen", "CxrIrgenConfig"]
