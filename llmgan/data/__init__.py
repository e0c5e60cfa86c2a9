"""Captioned datasets: the built-in shapes and digits sets, vocabulary, and readers for user data."""
