from .method import IPAdapter, IPAdapterConfig

__all__ = ["IPAdapter", "IPAdapterConfig"]
