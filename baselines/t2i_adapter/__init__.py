from .method import T2IAdapterBaseline, T2IAdapterConfig

__all__ = ["T2IAdapterBaseline", "T2IAdapterConfig"]
