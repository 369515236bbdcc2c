"""One router module per resource; `gridshare.api.main` assembles them."""
