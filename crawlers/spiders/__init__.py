"""One module per source; each spider takes a base URL and requests documented paths under it."""
