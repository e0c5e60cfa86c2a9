"""llmgan test suite."""
