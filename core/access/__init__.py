"""Authorization: the Casbin policy says what a role may do and at which scope; the
database says who holds which role where; `core.access.scopes` compiles the two into SQL
filters, so rows outside a caller's scope are never fetched."""
