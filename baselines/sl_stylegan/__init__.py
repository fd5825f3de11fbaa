from .method import SLStyleGAN, SLStyleGANConfig

__all__ = ["SLStyleGAN", "SLStyleGANConfig"]
