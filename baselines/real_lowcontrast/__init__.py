from .method import RealLowContrast

__all__ = ["RealLowContrast"]
