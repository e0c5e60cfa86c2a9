"""The text-conditioned GAN: networks, losses, augmentation, training step, checkpoints, sampling."""
