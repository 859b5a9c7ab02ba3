"""The built-in steering methods, one module each, registered as entry points in
``pyproject.toml`` exactly as a third-party plug-in registers its own."""
