from .method import SDFinetune, SDFinetuneConfig

__all__ = ["SDFinetune", "SDFinetuneConfig"]
