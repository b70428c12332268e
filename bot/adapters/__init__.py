"""Platform adapters: each translates a platform's events into core calls and renders the results."""
