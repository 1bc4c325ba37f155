"""Configuration: TOML files checked against typed sections, one module per section."""
