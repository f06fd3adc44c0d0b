"""Plugin registrations. Importing ``ctrstore.plugins.builtins`` registers the built-in set."""
