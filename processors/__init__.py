"""The stream processors: a handler of the hub runtime (hub.engine) around pure business rules."""
