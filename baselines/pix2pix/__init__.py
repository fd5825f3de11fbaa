from .method import Pix2Pix, Pix2PixConfig

__all__ = ["Pix2Pix", "Pix2PixConfig"]
