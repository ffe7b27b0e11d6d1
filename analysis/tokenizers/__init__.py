"""Builders of the tokenizers the project ships under data/tokenizers/, each from its committed source."""
