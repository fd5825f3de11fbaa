from .method import AttnRefocus, AttnRefocusConfig

__all__ = ["AttnRefocus", "AttnRefocusConfig"]
