"""faust-streaming processors: thin shells around pure business rules."""
