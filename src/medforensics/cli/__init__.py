"""Command-line interface: one small module per subcommand."""
