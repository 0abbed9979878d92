"""Authentication: OpenID Connect (ID-porten, Feide), session tokens, demo tokens."""
