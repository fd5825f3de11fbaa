from .method import Pix2PixHD, Pix2PixHDConfig

__all__ = ["Pix2PixHD", "Pix2PixHDConfig"]
