from .method import VanillaLDM

__all__ = ["VanillaLDM"]
