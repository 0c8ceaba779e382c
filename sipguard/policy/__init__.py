"""The YAML policy: facts in, decision out. Pure: no I/O, no parsing at evaluation time."""
