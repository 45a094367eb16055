"""The topic catalog (every topic declared once) and its idempotent application to a cluster."""
