"""The lowest floor: input errors, atomic I/O, the output contract (every path, schema, reader and writer) and the project vocabulary."""
