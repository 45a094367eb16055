"""Business rules as pure functions over the models, with their data files (validated on load)."""
