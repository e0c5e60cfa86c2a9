"""Evaluation independent of the discriminator: attribute classifier and image-quality figures."""
