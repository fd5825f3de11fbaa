"""GAN machinery shared by the GAN baselines (PGAN, SL-StyleGAN): equalized-lr layers, losses and penalties,
EMA, the progressive-growing schedule, the training loop, and the per-class Generator base class; `conditional`:
what the image-to-image GANs (Pix2Pix, Pix2PixHD) share (generator save / load, the per-epoch lr)."""
