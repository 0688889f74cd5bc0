"""fastlayers benchmark CLI: ``python -m bench`` (see bench/README.md)."""
