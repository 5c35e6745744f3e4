"""OneFormer tasks: thin, read the spec and call the library."""
