"""Text models: the sentence encoder with its caches, and the caption-expansion language model."""
