"""The edges: the only code that touches git, the file system of spec dirs, and (later) Docker."""
