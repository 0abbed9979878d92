"""Tavle: a GraphQL platform for a Norwegian municipality's school administration."""
