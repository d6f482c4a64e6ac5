"""Data files shipped with the built-in environments (a package, so that they are installed with it)."""
