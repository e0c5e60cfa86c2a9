"""llmgan: distributed batch image generation with a caption LM and a text-conditioned GAN."""

__version__ = "0.1.0"
